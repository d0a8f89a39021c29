"""`ckpt-studio export` as a user runs it (through core.cli.export's parser + core.cli's guard)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from core.cli.export import add_parser
from core.cli.main import EXIT_ERROR, EXIT_OK, _guarded
from tests.fixtures import export_models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEC = "x: float32[batch(1..64),3,32,32]"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ckpt-studio")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = _guarded(args.run, args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lightning-style training checkpoint of the CNN (keys carry 'model.')."""
    path = tmp_path_factory.mktemp("ckpt") / "cnn.ckpt"
    state = {f"model.{k}": v for k, v in export_models.cnn().state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    return path


def test_the_issue_command_end_to_end(checkpoint, tmp_path, capsys):
    """`--arch tests_models:cnn` spelled with the fixtures folder on the search path."""
    code, out, err = run(["export", str(checkpoint), "--arch", "export_models:cnn",
                          "--arch-path", str(FIXTURES), "--input", SPEC,
                          "--to", "onnx,torchscript,pt2", "--out-dir", str(tmp_path)], capsys)
    assert code == EXIT_OK, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx", "cnn.pt2",
                                                         "cnn.torchscript.pt"]
    assert "the prefix 'model.' was stripped" in out
    assert "onnx: " in out and "dynamo, opset 20" in out and "max abs diff vs eager" in out
    model = export_models.cnn()
    x = torch.randn(16, 3, 32, 32)
    session = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(torch.from_numpy(session.run(None, {"x": x.numpy()})[0]), expected,
                              atol=1e-5)
        program = torch.export.load(tmp_path / "cnn.pt2").module()
        assert torch.allclose(program(x), expected, atol=1e-5)


def test_json_with_kwargs_inferred_input_and_int8(tmp_path, capsys):
    ckpt = tmp_path / "mlp.pt"
    torch.save(export_models.mlp(hidden=32).state_dict(), ckpt)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(["export", str(ckpt), "--arch", "tests.fixtures.export_models:mlp",
                          "--arch-kwargs", '{"hidden": 32}', "--to", "torchscript",
                          "--quantize", "dynamic-int8", "--out-dir", str(out_dir), "--json"],
                         capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["inputs"] == "x: float32[batch(1..64), 8]"  # from the first Linear
    assert data["weights"]["ok"] and data["weights"]["loaded"] == 4
    assert [(r["target"], r["quantized"]) for r in data["results"]] == [
        ("torchscript", None), ("torchscript", "dynamic-int8")]
    assert all(r["ok"] for r in data["results"])


def test_weights_that_do_not_fit(checkpoint, tmp_path, capsys):
    code, _, err = run(["export", str(checkpoint), "--arch", "tests.fixtures.export_models:cnn",
                        "--arch-kwargs", '{"channels": 6}', "--to", "pt2",
                        "--out-dir", str(tmp_path)], capsys)
    assert code == EXIT_ERROR
    assert "Error: The checkpoint's weights do not fit this architecture" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_a_failed_target_still_writes_the_others(tmp_path, capsys):
    ckpt = tmp_path / "gated.pt"
    torch.save(export_models.gated().state_dict(), ckpt)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, _ = run(["export", str(ckpt), "--arch", "tests.fixtures.export_models:gated",
                        "--input", "x: float32[batch(1..64), 8]", "--to", "torchscript,pt2",
                        "--out-dir", str(out_dir)], capsys)
    assert code == EXIT_ERROR
    assert "pt2: FAILED - torch.export cannot export this model" in out
    assert "warning: Tracing recorded only" in out
    assert [p.name for p in out_dir.iterdir()] == ["gated.torchscript.pt"]


@pytest.mark.parametrize(("extra", "words"), [
    (["--arch-kwargs", "{bad"], "keyword arguments are not valid JSON"),
    (["--input", "x: float32[batch(1..64]"], "The input spec is not valid"),
    (["--arch", "tests.fixtures.export_models:nothing"], "has no 'nothing'"),
])
def test_bad_arguments(checkpoint, tmp_path, capsys, extra, words):
    argv = ["export", str(checkpoint), "--arch", "tests.fixtures.export_models:cnn", "--to", "pt2",
            "--out-dir", str(tmp_path), *extra]
    code, _, err = run(argv, capsys)
    assert code == EXIT_ERROR and words in err


def test_a_torchscript_checkpoint_needs_trust(files, tmp_path, capsys):
    argv = ["export", str(files["torchscript"]), "--input", "x: float32[1, 3, 8, 8]",
            "--to", "onnx", "--out-dir", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert code == EXIT_ERROR and "--trust" in err
    code, out, err = run([*argv, "--trust", "--onnx-exporter", "legacy"], capsys)
    assert code == EXIT_OK, err
    assert (tmp_path / "model.onnx").is_file()


def test_the_export_help_names_every_target() -> None:
    """`export --help` lists the targets without importing torch; the list must follow TARGETS."""
    from core.cli.export import TARGET_NAMES
    from core.export import TARGETS

    assert set(TARGET_NAMES) == set(TARGETS)

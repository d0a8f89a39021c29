"""`ckpt-studio check parity|latency` through core.cli.check's parser and core.cli's guard."""

from __future__ import annotations

import argparse
import json

import pytest

from core.cli.check import add_parser
from core.cli.main import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, _guarded
from tests.fixtures.check_models import CNN_SPEC, cnn, export_onnx, perturb_initializer


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ckpt-studio")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = _guarded(args.run, args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("check_cli")
    good = export_onnx(cnn(), root / "cnn.onnx", ["y"])
    return {"good": good, "bad": perturb_initializer(good, root / "bad.onnx", "head.bias", 0, 0.25)}


def test_parity_torchscript_vs_onnx_json(files, capsys):
    code, out, err = run(["check", "parity", str(files["torchscript"]), str(files["onnx"]),
                          "--trust", "--input", "x: float32[1, 3, 8, 8]", "--json"], capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["kind"] == "parity" and data["passed"] is True and len(data["cases"]) == 1
    assert data["reference"]["backend"] == "torchscript"


def test_parity_without_trust_is_a_plain_error(files, capsys):
    code, out, err = run(["check", "parity", str(files["torchscript"]), str(files["onnx"])], capsys)
    assert code == EXIT_ERROR and out == ""
    assert err.startswith("Error: ") and "--trust" in err and len(err.strip().splitlines()) == 1


def test_parity_failure_saves_cases_and_writes_reports(cnn_files, tmp_path, capsys):
    report = tmp_path / "parity.html"
    saves = tmp_path / "failures"
    code, out, err = run(["check", "parity", str(cnn_files["good"]), str(cnn_files["bad"]),
                          "--input", CNN_SPEC, "--shapes", "batch=1", "batch=5",
                          "--save-dir", str(saves), "--report", str(report)], capsys)
    assert code == EXIT_FINDINGS, err
    assert "# Parity: FAIL" in out and "Output 'y'" in out and "0.25" in out
    assert len(list(saves.glob("*.npz"))) == 2
    page = report.read_text()
    assert "<table>" in page and "Parity: FAIL" in page
    md = tmp_path / "parity.md"
    code, out, _ = run(["check", "parity", str(cnn_files["good"]), str(cnn_files["bad"]),
                        "--inputs-npz", str(next(saves.glob("*.npz"))), "--report", str(md),
                        "--save-dir", str(tmp_path / "again"), "--json"], capsys)
    assert code == EXIT_FINDINGS and json.loads(out)["cases"][0]["outputs"][0]["max_abs_diff"] > 0.2
    assert md.read_text().startswith("# Parity: FAIL")


def test_parity_tolerance_option_lets_it_pass(cnn_files, capsys):
    code, out, err = run(["check", "parity", str(cnn_files["good"]), str(cnn_files["bad"]),
                          "--input", CNN_SPEC, "--shapes", "batch=2", "--tol", "y=0.3,0",
                          "--json"], capsys)
    assert code == EXIT_OK, err


def test_latency_json_and_html_report(cnn_files, tmp_path, capsys):
    report = tmp_path / "latency.html"
    code, out, err = run(["check", "latency", str(cnn_files["good"]), "--input", CNN_SPEC,
                          "--batches", "1,3", "--runs", "4", "--warmup", "1", "--threads", "1",
                          "--json", "--report", str(report)], capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    batches = data["runners"][0]["batches"]
    assert [b["batch"] for b in batches] == [1, 3] and all(b["stats"]["runs"] == 4 for b in batches)
    assert data["runners"][0]["runner"]["threads"] == 1
    assert "<svg" in report.read_text()


def test_latency_of_two_sources_as_tables(files, cnn_files, capsys):
    code, out, err = run(["check", "latency", str(cnn_files["good"]), "tests.fixtures.models:TinyNet",
                          "--weights", str(files["state_dict"]), "--input", CNN_SPEC,
                          "--batches", "2", "--runs", "3", "--warmup", "0"], capsys)
    assert code == EXIT_OK, err
    assert "| runner | device |" in out and "eager (TinyNet + state_dict.pt)" in out


@pytest.mark.parametrize("argv, words", [
    (["check", "latency", "missing.onnx", "--input", CNN_SPEC], "does not exist"),
    (["check", "latency", "{good}", "--batches", "1,x"], "not a list of batch sizes"),
    (["check", "latency", "{good}", "--input", "x: float32[batch(1..4), 3, 8, 8]",
      "--batches", "8"], "outside its range"),
    (["check", "parity", "{good}", "{good}", "--shapes", "batch16"], "not a shape to test"),
    (["check", "parity", "{good}", "{good}", "--inputs-npz", "nowhere.npz"], "does not exist"),
])
def test_bad_arguments_are_one_plain_sentence(cnn_files, capsys, argv, words):
    argv = [a.format(good=cnn_files["good"]) for a in argv]
    code, out, err = run(argv, capsys)
    assert code == EXIT_ERROR and words in err and len(err.strip().splitlines()) == 1

"""`ckpt-studio --self-test` unfrozen: it passes here, and a missing library or file fails it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import selftest
from core.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
STEP_PREFIXES = ("versions:", "open:", "convert:", "export:", "parity:", "capabilities:",
                 "self-test passed")


def _run(code: list[str], tmp_path: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_vars)
    return subprocess.run([sys.executable, *code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)


def test_self_test_passes_with_one_line_per_step(tmp_path: Path) -> None:
    result = _run(["-m", "core.cli", "--self-test"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(" ")[0] for line in lines] == [p.split(" ")[0] for p in STEP_PREFIXES]
    assert "dynamo exporter" in lines[3] and "tiny.int8.onnx" in lines[3] and "tiny.pt2" in lines[3]
    assert "passed" in lines[4]
    assert lines[5].startswith("capabilities: export targets here: onnx, torchscript, pt2")
    assert list(tmp_path.iterdir()) == []  # worked in its own temp folder only


def test_simulated_frozen_app_without_a_compiler_passes_and_offers_no_aoti(tmp_path: Path) -> None:
    """As the bundle runs: sys.frozen set, no executorch inside, no compiler on PATH."""
    empty = tmp_path / "bin"
    empty.mkdir()
    code = ("import sys; sys.frozen = True; sys.modules['executorch'] = None\n"
            "from core.cli import main; sys.exit(main(['--self-test']))")
    result = _run(["-c", code], tmp_path, PATH=str(empty), CXX="")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert "(frozen)" in lines[0]
    assert lines[5] == ("capabilities: export targets here: onnx, torchscript, pt2; not here: "
                        "aoti, executorch (ckpt-studio doctor says why)")


def test_a_frozen_report_that_offers_aoti_fails_the_self_test(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import core.capabilities

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(core.capabilities, "compiler_problem", lambda: None)  # a report that lies
    with pytest.raises(CheckpointError) as caught:
        selftest.step_capabilities(selftest.State(tmp_path))
    assert caught.value.message == ("The capability report offers what needs a C++ compiler, "
                                    "which the installed app does not carry: aoti, compiled")


def test_a_report_that_denies_a_used_target_fails_the_self_test(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import core.capabilities

    monkeypatch.setattr(core.capabilities, "_onnx_problem", lambda: "onnx is hidden")
    with pytest.raises(CheckpointError) as caught:
        selftest.step_capabilities(selftest.State(tmp_path))
    assert caught.value.message == ("The capability report calls unavailable what the self-test "
                                    "just used: onnx (Onnx is hidden.)")


@pytest.mark.parametrize("module", ["onnxscript", "onnxruntime", "safetensors"])
def test_missing_library_fails_with_its_name(module: str, tmp_path: Path) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from core.cli import main; sys.exit(main(['--self-test']))")
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 1
    assert "self-test FAILED" in result.stderr and module in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_bundled_checkpoint_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(selftest, "tiny_checkpoint", lambda: tmp_path / "gone.safetensors")
    assert selftest.run() == 1
    err = capsys.readouterr().err
    assert "FAILED at 'open'" in err and "missing" in err


def test_a_failing_step_stops_the_run(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(state: selftest.State) -> str:
        raise ImportError("No module named 'onnxscript.function_libs'")

    monkeypatch.setattr(selftest, "STEPS", [("versions", selftest.step_versions),
                                            ("export", broken), ("parity", selftest.step_parity)])
    assert selftest.run() == 1
    out = capsys.readouterr()
    assert out.out.startswith("versions:") and "parity" not in out.out
    assert "FAILED at 'export': ImportError: No module named 'onnxscript.function_libs'" in out.err


def test_bundled_checkpoint_is_what_the_generator_writes(tmp_path: Path) -> None:
    """resources/selftest/tiny.safetensors is reproducible from packaging/make_selftest_checkpoint.py."""
    from safetensors.numpy import load_file

    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import make_selftest_checkpoint as maker
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    shipped = load_file(str(selftest.tiny_checkpoint()))
    expected = maker.tensors()
    assert shipped.keys() == expected.keys()
    for name, array in expected.items():
        assert (shipped[name] == array).all(), name

"""`ckpt-studio doctor`: the capability report as a user reads it, and honest reasons when things
are missing."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import core.capabilities
from core.cli.main import EXIT_OK, main
from core.export import TARGETS
from core.runtime import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


def _doctor_json(capsys, *flags: str) -> dict:
    capsys.readouterr()
    assert main(["doctor", "--json", *flags]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def _by_name(report: dict) -> dict:
    return {(e["name"], kind): e for kind in ("targets", "runners") for e in report[kind]}


def _hide_executorch(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now fails


def test_json_lists_every_target_and_runner_with_available_and_reason(capsys):
    report = _doctor_json(capsys)
    assert [t["name"] for t in report["targets"]] == list(TARGETS)
    assert [r["name"] for r in report["runners"]] == list(BACKENDS)
    for entry in report["targets"] + report["runners"]:
        assert entry["available"] is (entry["reason"] is None)
    import torch

    assert report["versions"]["torch"] == torch.__version__
    assert report["cuda"] is torch.cuda.is_available()
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    compiler_here = bool(shutil.which("g++") or shutil.which("clang++"))
    aoti = next(t for t in report["targets"] if t["name"] == "aoti")
    assert report["compiler"]["available"] is compiler_here is aoti["available"]


def test_hidden_compiler_and_package_give_reasons(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, no clang++
    monkeypatch.delenv("CXX", raising=False)
    _hide_executorch(monkeypatch)
    report = _doctor_json(capsys)
    by_name = _by_name(report)
    assert report["compiler"] == {"available": False, "reason": "No C++ compiler (g++ or "
                                  "clang++) was found on this machine."}
    assert by_name["aoti", "targets"]["available"] is False
    assert "AOTInductor needs a C++ compiler" in by_name["aoti", "targets"]["reason"]
    assert "Compiling with torch.compile needs a C++ compiler" in by_name["compiled", "runners"]["reason"]
    for kind in ("targets", "runners"):
        entry = by_name["executorch", kind]
        assert entry["available"] is False
        assert "executorch package is not installed" in entry["reason"]
        assert "checkpoint-studio[executorch]" in entry["reason"]
    assert report["versions"]["executorch"] is None
    assert by_name["onnx", "targets"]["available"] is True  # the rest is unaffected


def test_text_report_names_each_target(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    capsys.readouterr()
    assert main(["doctor"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "C++ compiler: No C++ compiler" in out
    assert "  aoti         no: AOTInductor needs a C++ compiler" in out
    assert "  onnx         yes" in out
    assert "ONNX Runtime providers:" in out and "CPUExecutionProvider" in out


@pytest.mark.skipif(core.capabilities.package_version("executorch") is None,
                    reason="the executorch package is not installed here")
def test_without_probe_executorch_is_judged_by_its_files_and_probe_agrees(capsys):
    code = ("import json, sys; from core.cli.main import main; main(['doctor', '--json']); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('executorch.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    report_text, imported = done.stdout.rsplit("\n", 2)[:2]
    quick = json.loads(report_text)
    assert quick["probed"] is False
    assert json.loads(imported) == []  # what makes it fast: nothing of executorch was imported
    probed = _doctor_json(capsys, "--probe")
    assert probed["probed"] is True
    for key in ("executorch", "targets"), ("executorch", "runners"):
        assert _by_name(quick)[key] == _by_name(probed)[key]
    capsys.readouterr()
    assert main(["doctor"]) == EXIT_OK
    assert "`ckpt-studio doctor --probe` imports" in capsys.readouterr().out


@pytest.mark.skipif(core.capabilities.package_version("executorch") is None,
                    reason="the executorch package is not installed here")
def test_a_runtime_built_for_another_python_is_named(capsys, monkeypatch):
    monkeypatch.setattr(importlib.machinery, "EXTENSION_SUFFIXES", [".cpython-399-other.so"])
    entry = _by_name(_doctor_json(capsys))["executorch", "runners"]
    assert entry["available"] is False
    assert entry["reason"] == (
        "The installed executorch package is incomplete (its native library "
        "extension/pybindings/_C is missing or built for another Python); reinstall it (pip "
        "install 'checkpoint-studio[executorch]').")
    assert _by_name(_doctor_json(capsys))["executorch", "targets"]["available"] is True


def test_the_frozen_app_reports_no_aoti_and_no_executorch(capsys, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # as in a PyInstaller bundle
    _hide_executorch(monkeypatch)  # the bundle does not carry it
    report = _doctor_json(capsys)
    by_name = _by_name(report)
    assert by_name["aoti", "runners"]["available"] is True  # loading needs no compiler
    monkeypatch.setitem(sys.modules, "setuptools", None)  # a bundle without it cannot load one
    assert _by_name(_doctor_json(capsys))["aoti", "runners"]["reason"] == (
        "The installed app leaves out setuptools, which loading an AOTInductor package needs; run "
        "it from a pip installation.")
    no_compiler = "the installed app carries no C++ compiler or Python headers for it"
    assert report["compiler"] == {"available": False, "reason": no_compiler[0].upper() +
                                  no_compiler[1:] + "."}
    assert by_name["aoti", "targets"] == {"name": "aoti", "kind": "target", "available": False,
                                          "reason": f"AOTInductor needs a C++ compiler, but "
                                                    f"{no_compiler}."}
    assert by_name["compiled", "runners"]["available"] is False
    for kind in ("targets", "runners"):
        assert by_name["executorch", kind]["reason"] == (
            "The installed app does not include ExecuTorch; use a pip installation with the "
            "executorch extra (pip install 'checkpoint-studio[executorch]').")
    for name in ("onnx", "torchscript", "pt2"):
        assert by_name[name, "targets"]["available"] is True

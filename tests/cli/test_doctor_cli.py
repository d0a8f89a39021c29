"""`ckpt-studio doctor`: the capability report as a user reads it, and honest reasons when things
are missing."""

from __future__ import annotations

import json
import shutil
import sys

from core.cli.main import EXIT_OK, main
from core.export import TARGETS
from core.runtime import BACKENDS


def _doctor_json(capsys) -> dict:
    capsys.readouterr()
    assert main(["doctor", "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


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
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)  # import executorch now fails
    report = _doctor_json(capsys)
    by_name = {(e["name"], kind): e for kind in ("targets", "runners") for e in report[kind]}
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

"""`--to aoti`: AOTInductor packages of the small MLP and CNN (conv, batch norm, linear) with a
dynamic batch, checked against the .pt2 program through `check parity` at batch 1, 16 and 64; the
refusals without a compiler and without trust. Compiling C++ takes about half a CPU-minute per
model, so each model is compiled once (module fixture, `slow`)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import CheckFailed, ExportError
from core.export import export
from core.inputs import parse_specs
from core.runtime import build_runner
from core.runtime.aoti import AotiRunner
from tests.core.target_parity import check_artefact, check_parity_at_batches, export_with_pt2
from tests.fixtures import export_models

HAS_COMPILER = bool(shutil.which("g++") or shutil.which("clang++"))
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler (g++/clang++) here")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """A model exported to pt2 and aoti in one run, compiled on first use."""
    made: dict[str, Any] = {}

    def package(name: str) -> dict[str, Any]:
        if name not in made:
            made[name] = export_with_pt2(tmp_path_factory.mktemp(f"aoti_{name}"), name, "aoti")
        return made[name]

    return package


@pytest.mark.slow
@pytest.mark.timeout(900)  # the compile, on a busy machine
@needs_compiler
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_package_matches_the_model_and_the_pt2_program(packages, name, capsys):
    check_artefact(packages(name), name, "aoti", f"{name}.aoti.pt2")
    check_parity_at_batches(capsys, packages(name), name, "aoti", "aoti")


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_compiler
def test_runner_names_and_trust(packages):
    path = packages("cnn")["results"]["aoti"].path
    with pytest.raises(CheckFailed, match="compiled machine code.*--trust"):
        build_runner(path)
    runner = build_runner(path, trust=True)
    assert runner.backend == "aoti" and runner.input_names == ["x"]
    import numpy as np

    outputs = runner.run({"x": np.ones((3, 3, 8, 8), np.float32)})
    assert list(outputs) == ["output"] and outputs["output"].shape == (3, 5)


def test_without_a_compiler_the_target_refuses_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    model, specs = export_models.mlp(), parse_specs(export_models.SPECS["mlp"])
    with pytest.raises(ExportError) as caught:
        export(model, specs, ["aoti"], tmp_path / "out")
    assert caught.value.message == ("The AOTInductor target needs a C++ compiler, but no C++ "
                                    "compiler (g++ or clang++) was found on this machine; choose "
                                    "the pt2 or onnx target instead.")
    assert not (tmp_path / "out").exists()


def test_without_setuptools_the_runner_refuses_in_one_sentence(tmp_path, monkeypatch):
    """torch imports setuptools while loading a package; the frozen app must say so, not crash."""
    monkeypatch.setitem(sys.modules, "setuptools", None)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(CheckFailed) as caught:
        AotiRunner.load(tmp_path / "model.aoti.pt2", trust=True)
    assert caught.value.message == (
        f"'{tmp_path / 'model.aoti.pt2'}' is an AOTInductor package, which cannot run here: the "
        "installed app leaves out setuptools, which loading an AOTInductor package needs; run it "
        "from a pip installation.")


def test_without_setuptools_the_target_refuses_before_compiling(tmp_path, monkeypatch):
    import core.capabilities

    monkeypatch.setattr(core.capabilities, "compiler_problem", lambda: None)  # a compiler or not
    monkeypatch.setitem(sys.modules, "setuptools", None)
    model, specs = export_models.mlp(), parse_specs(export_models.SPECS["mlp"])
    with pytest.raises(ExportError) as caught:
        export(model, specs, ["aoti"], tmp_path / "out")
    assert caught.value.message == (
        "The AOTInductor target cannot check its package here: loading an AOTInductor package "
        "needs setuptools, missing from this Python (pip install setuptools packaging).")
    assert not (tmp_path / "out").exists()

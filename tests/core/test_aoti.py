"""`--to aoti`: an AOTInductor package of the small CNN (conv, batch norm, linear) with a dynamic
batch, checked against the .pt2 program through `check parity` at batch 1, 16 and 64; the refusals
without a compiler and without trust. Compiling C++ takes about half a CPU-minute per model, so one
model is compiled, once (module fixture, `slow`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.cli.main import EXIT_OK, main
from core.errors import CheckFailed, ExportError
from core.export import ExportOptions, export
from core.inputs import parse_specs
from core.runtime import build_runner
from tests.fixtures import export_models

HAS_COMPILER = bool(shutil.which("g++") or shutil.which("clang++"))
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler (g++/clang++) here")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CNN exported to pt2 and aoti in one run."""
    out = {}
    for name in ("cnn",):
        folder = tmp_path_factory.mktemp(f"aoti_{name}")
        model, specs = getattr(export_models, name)(), parse_specs(export_models.SPECS[name])
        results = export(model, specs, ["pt2", "aoti"], folder, ExportOptions(name=name))
        out[name] = {"folder": folder, "results": {r.target: r for r in results}}
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)  # the compile, on a busy machine
@needs_compiler
@pytest.mark.parametrize("name", ["cnn"])
def test_package_matches_the_model_and_the_pt2_program(packages, name, capsys):
    result = packages[name]["results"]["aoti"]
    assert result.ok and result.path == str(packages[name]["folder"] / f"{name}.aoti.pt2")
    assert Path(result.path).is_file() and result.size == Path(result.path).stat().st_size
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert result.checked_shapes and result.checked_shapes[0]["max_abs_diff"] <= 1e-4
    assert result.dynamic_dims == {"x": {0: {"name": "batch", "min": 1, "max": 64}}}
    assert sorted(p.name for p in packages[name]["folder"].iterdir()) == \
        [f"{name}.aoti.pt2", f"{name}.pt2"]  # no staging folder left behind
    pt2 = packages[name]["results"]["pt2"].path
    capsys.readouterr()
    code = main(["check", "parity", pt2, result.path, "--trust", "--input",
                 export_models.SPECS[name], "--shapes", "batch=1", "batch=16", "batch=64",
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and data["passed"] is True
    assert data["candidate"]["backend"] == "aoti"
    batches = sorted(case["input_shapes"]["x"][0] for case in data["cases"])
    assert batches == [1, 16, 64]


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_compiler
def test_runner_names_and_trust(packages):
    path = packages["cnn"]["results"]["aoti"].path
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

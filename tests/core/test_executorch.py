"""`--to executorch`: .pte programs of the small MLP and CNN with a dynamic batch (XNNPACK), checked
against the .pt2 program through `check parity` at batch 1, 16 and 64; the refusals without the
package and without an upper bound on a dynamic dim."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from core.capabilities import executorch_problem
from core.cli.main import EXIT_OK, main
from core.errors import ExportError
from core.export import ExportOptions, export
from core.inputs import parse_specs
from core.runtime import build_runner
from tests.fixtures import export_models

PROBLEM = executorch_problem()
needs_executorch = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The MLP and the CNN, each exported to pt2 and executorch in one run."""
    return {name: _export_both(tmp_path_factory.mktemp(f"pte_{name}"), name)
            for name in ("mlp", "cnn")}


def _export_both(folder: Path, name: str) -> dict[str, Any]:
    model, specs = getattr(export_models, name)(), parse_specs(export_models.SPECS[name])
    results = export(model, specs, ["pt2", "executorch"], folder,
                     ExportOptions(name=name, keep_going=True))
    return {"folder": folder, "results": {r.target: r for r in results}}


@pytest.mark.slow
@needs_executorch
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_program_matches_the_model_and_the_pt2_program(programs, name, capsys):
    result = programs[name]["results"]["executorch"]
    if name == "cnn" and not result.ok:
        # executorch 1.5.1 with torch 2.13 plans the 4-D input for batch <= 15 only: the export must
        # then refuse in one sentence and leave no .pte, never pass a program that fails at 16
        assert "ExecuTorch planned memory for 'batch' of x only up to" in result.error["message"]
        assert not (programs[name]["folder"] / f"{name}.pte").exists()
        pytest.xfail(result.error["message"])
    assert result.ok and result.path == str(programs[name]["folder"] / f"{name}.pte")
    assert Path(result.path).read_bytes()[4:8] == b"ET12"
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert result.checked_shapes and result.checked_shapes[0]["max_abs_diff"] <= 1e-4
    assert sorted(p.name for p in programs[name]["folder"].iterdir()) == \
        [f"{name}.pt2", f"{name}.pte"]  # no staging folder left behind
    pt2 = programs[name]["results"]["pt2"].path
    capsys.readouterr()
    code = main(["check", "parity", pt2, result.path, "--trust", "--input",
                 export_models.SPECS[name], "--shapes", "batch=1", "batch=16", "batch=64",
                 "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and data["passed"] is True
    assert data["candidate"]["backend"] == "executorch"
    assert sorted(case["input_shapes"]["x"][0] for case in data["cases"]) == [1, 16, 64]


@pytest.mark.slow
@needs_executorch
def test_runner_runs_without_trust(programs):
    import numpy as np

    runner = build_runner(programs["mlp"]["results"]["executorch"].path)  # no code in a .pte
    assert runner.backend == "executorch" and runner.input_names == ["input_0"]
    outputs = runner.run({"input_0": np.ones((3, 8), np.float32)})
    assert list(outputs) == ["output"] and outputs["output"].shape == (3, 4)


def test_without_the_package_the_target_refuses_and_writes_nothing(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "executorch", None)
    model, specs = export_models.mlp(), parse_specs(export_models.SPECS["mlp"])
    with pytest.raises(ExportError) as caught:
        export(model, specs, ["executorch"], tmp_path / "out")
    assert caught.value.message == (
        "The ExecuTorch target cannot run here: the executorch package is not installed "
        "(pip install 'checkpoint-studio[executorch]').")
    assert not (tmp_path / "out").exists()


@needs_executorch
def test_a_dynamic_dim_without_upper_bound_is_refused(tmp_path):
    model, specs = export_models.mlp(), parse_specs("x: float32[batch, 8]")
    assert specs[0].dims[0].is_dynamic and specs[0].dims[0].max is None
    with pytest.raises(ExportError, match="ExecuTorch needs an upper bound.*batch\\(1..64\\)"):
        export(model, specs, ["executorch"], tmp_path / "out")
    assert not (tmp_path / "out").exists()

"""`--to executorch`: .pte programs of the small MLP and CNN with a dynamic batch (XNNPACK), checked
against the .pt2 program through `check parity` at batch 1, 16 and 64; the refusals without the
package, without an upper bound on a dynamic dim, and when lowering plans less than the spec allows."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

import core.export.executorch as executorch_target
from core.capabilities import executorch_problem
from core.errors import ExportError
from core.export import export
from core.inputs import parse_specs
from core.runtime import build_runner
from tests.core.target_parity import check_artefact, check_parity_at_batches, export_with_pt2
from tests.fixtures import export_models

PROBLEM = executorch_problem()
needs_executorch = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The MLP and the CNN, each exported to pt2 and executorch in one run."""
    return {name: export_with_pt2(tmp_path_factory.mktemp(f"pte_{name}"), name, "executorch")
            for name in ("mlp", "cnn")}


@pytest.mark.slow
@needs_executorch
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_program_matches_the_model_and_the_pt2_program(programs, name, capsys):
    result = check_artefact(programs[name], name, "executorch", f"{name}.pte")
    with open(result.path, "rb") as f:
        assert f.read(8)[4:8] == b"ET12"
    check_parity_at_batches(capsys, programs[name], name, "executorch", "executorch")


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


def _method_planned_for(*sizes: int) -> Any:
    meta = SimpleNamespace(sizes=lambda: sizes)
    return SimpleNamespace(metadata=SimpleNamespace(input_tensor_meta=lambda index: meta))


def test_memory_planned_below_the_spec_range_is_refused():
    job = SimpleNamespace(specs=parse_specs(export_models.SPECS["cnn"]))
    executorch_target._check_planned_bounds(_method_planned_for(64, 3, 8, 8), job)  # covers 1..64
    with pytest.raises(ExportError) as caught:
        executorch_target._check_planned_bounds(_method_planned_for(15, 3, 8, 8), job)
    assert caught.value.message.startswith(
        "ExecuTorch planned memory for 'batch' of x only up to 15, not the 64 the input spec "
        "allows")
    assert "narrow the range to at most 15" in caught.value.message

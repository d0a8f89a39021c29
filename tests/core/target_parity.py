"""What the ExecuTorch and AOTInductor target tests share: export a small model to .pt2 and a target
in one run, check the artefact the target wrote, and check it against the .pt2 program through
`ckpt-studio check parity` at batch 1, 16 and 64 (the tiny models' specs allow 1..64)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.cli.main import EXIT_OK, main
from core.export import ExportOptions, export
from core.export.common import ExportResult
from core.inputs import parse_specs
from tests.fixtures import export_models

BATCHES = [1, 16, 64]
TOLERANCE = 1e-4


def export_with_pt2(folder: Path, name: str, target: str) -> dict[str, Any]:
    """`export_models.<name>` exported to pt2 and `target` in one run: {folder, results by target}."""
    model, specs = getattr(export_models, name)(), parse_specs(export_models.SPECS[name])
    results = export(model, specs, ["pt2", target], folder, ExportOptions(name=name, keep_going=True))
    return {"folder": folder, "results": {r.target: r for r in results}}


def check_artefact(exported: dict[str, Any], name: str, target: str, file_name: str) -> ExportResult:
    """The target's result: written where it says, checked at two shapes, nothing else left over."""
    result, folder = exported["results"][target], exported["folder"]
    assert result.ok, result.error
    assert result.path == str(folder / file_name) and Path(result.path).is_file()
    assert result.size == Path(result.path).stat().st_size
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    assert result.checked_shapes and result.checked_shapes[0]["max_abs_diff"] <= TOLERANCE
    assert result.dynamic_dims == {"x": {0: {"name": "batch", "min": 1, "max": 64}}}
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{name}.pt2", file_name])
    return result


def check_parity_at_batches(capsys: pytest.CaptureFixture[str], exported: dict[str, Any],
                            name: str, target: str, backend: str) -> None:
    """`check parity` of the .pt2 program against the target's artefact at BATCHES passes."""
    pt2, candidate = exported["results"]["pt2"].path, exported["results"][target].path
    capsys.readouterr()
    code = main(["check", "parity", pt2, candidate, "--trust", "--input",
                 export_models.SPECS[name], "--shapes", *[f"batch={b}" for b in BATCHES], "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and data["passed"] is True, data
    assert data["candidate"]["backend"] == backend
    assert sorted(case["input_shapes"]["x"][0] for case in data["cases"]) == BATCHES

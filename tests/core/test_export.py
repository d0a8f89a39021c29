"""Every target exports the small models, loads back with its runtime and matches eager within 1e-5
at batch 1, 16 and 64 (and every range end of the spec's dynamic dims)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from core.export import ExportOptions, export
from core.export.common import flatten
from core.inputs import example_inputs, parse_specs, shapes_to_test
from core.progress import Recorder
from tests.fixtures import export_models

MODELS = ["mlp", "cnn", "two_input", "lstm"]
TARGETS = ["onnx", "torchscript", "pt2"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each model exported once to every target (the LSTM also to dynamic int8)."""
    out = {}
    for name in MODELS:
        folder = tmp_path_factory.mktemp(name)
        model, specs = getattr(export_models, name)(), parse_specs(export_models.SPECS[name])
        options = ExportOptions(quantize="dynamic-int8" if name == "lstm" else None)
        progress = Recorder()
        results = export(model, specs, TARGETS, folder, options, progress)
        out[name] = {"model": model, "specs": specs, "folder": folder, "progress": progress,
                     "results": {(r.target, r.quantized): r for r in results}}
    return out


def runner(result: Any) -> Any:
    """A function inputs -> outputs over the artefact as its runtime loads it."""
    if result.target == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
        return lambda inputs: session.run(None, {k: v.numpy() for k, v in inputs.items()})
    if result.target == "torchscript":
        module = torch.jit.load(result.path)
    else:
        module = torch.export.load(result.path).module()
    return lambda inputs: flatten(module(*inputs.values()))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", MODELS)
def test_loads_back_and_matches_eager_through_the_dynamic_dims(exported, name, target):
    case = exported[name]
    result = case["results"][(target, None)]
    assert result.ok and Path(result.path).is_file() and result.size > 0
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    run = runner(result)
    points = shapes_to_test(case["specs"])
    assert {p["batch"] for p in points} == {1, 2, 16, 64} - {2}
    for point in points:
        inputs = example_inputs(case["specs"], point, seed=7)
        with torch.no_grad():
            expected = flatten(case["model"](*inputs.values()))
        with torch.no_grad():
            got = run(inputs)
        for e, g in zip(expected, got, strict=True):
            assert tuple(np.shape(g)) == tuple(e.shape), (point, target)
            assert np.abs(np.asarray(g) - e.numpy()).max() <= 1e-5, (point, target)


@pytest.mark.parametrize("name", MODELS)
def test_result_describes_the_artefacts(exported, name):
    case = exported[name]
    results = case["results"]
    assert [results[(t, None)].exporter for t in TARGETS] == ["dynamo", "trace", "export"]
    onnx_result = results[("onnx", None)]
    assert onnx_result.opset == 20 and onnx_result.fallback_reason is None
    assert onnx_result.input_names == [s.name for s in case["specs"]]
    assert onnx_result.output_names == ["output"]
    assert onnx_result.dynamic_dims["x"] == {0: {"name": "batch", "min": 1, "max": 64}}
    graph = onnx.load(onnx_result.path).graph
    assert [i.name for i in graph.input] == onnx_result.input_names
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # the spec's name
    for result in results.values():
        data = result.to_dict()
        assert data["ok"] and data["seconds"] > 0 and data["warnings"] == []
    names = sorted(p.name for p in case["folder"].iterdir())
    assert names == sorted(Path(r.path).name for r in results.values())  # no temp files left


def test_progress_reports_every_stage_up_to_the_total(exported):
    updates = exported["cnn"]["progress"].updates
    assert updates[-1][0] == updates[-1][1] and len(updates) >= 9
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)
    assert any("torch.export" in u[2] for u in updates)


def test_dynamic_int8_artefacts_are_reported_on_their_own(exported):
    case = exported["lstm"]
    results = case["results"]
    ts, ox = results[("torchscript", "dynamic-int8")], results[("onnx", "dynamic-int8")]
    assert Path(ts.path).name == "model.int8.torchscript.pt"
    assert Path(ox.path).name == "model.int8.onnx"
    assert ts.reference == "eager-int8" and ts.max_abs_diff <= 1e-5
    assert ox.exporter == "onnxruntime-quantize" and ox.reference == "eager-float"
    for result in (ts, ox):
        assert 0 < result.quantization_error < 0.5  # int8 weights: close, not equal
        inputs = example_inputs(case["specs"], {"batch": 16}, seed=3)
        with torch.no_grad():
            expected = case["model"](*inputs.values()).numpy()
        with torch.no_grad():
            got = np.asarray(runner(result)(inputs)[0])
        assert np.abs(got - expected).max() < 0.5
    graph = onnx.load(ox.path).graph
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM")
               for n in graph.node)

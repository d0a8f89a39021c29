"""core.checks.locate on a Hugging Face folder against its ONNX export with one projection damaged."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

from core.checks.locate import locate  # noqa: E402
from core.export import export  # noqa: E402
from core.hf.model import load_hf_model  # noqa: E402
from core.runtime import build_runner  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402

DAMAGED = "encoder.layer.1.attention.self.query"


def test_a_damaged_projection_inside_bert_is_named(tmp_path):
    import onnx
    from onnx import numpy_helper

    folder = hf_folders.bert_folder(tmp_path / "bert")
    hf = load_hf_model(folder)
    [result] = export(hf.module, hf.specs, ["onnx"], tmp_path / "out",
                      hf.export_options(name="model", onnx_exporter="dynamo"))
    assert result.ok, result.error
    proto = onnx.load(result.path)
    weight = _matmul_weight(proto, DAMAGED)  # the exporter stores it transposed, under a new name
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save(proto, damaged)

    loc = locate(build_runner(folder), build_runner(damaged))
    first = loc.first_divergence
    assert first is not None and first.module.endswith(DAMAGED) and first.module_type == "Linear"
    assert not any(r.exceeds for r in loc.rows if r.depth < first.depth)
    assert any(r.module.endswith("encoder.layer.0.output.dense") for r in loc.rows)


def _matmul_weight(proto, module: str):
    """The initializer a MatMul inside `module` multiplies by (from the exporter's metadata)."""
    initializers = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props
                       if p.key == "pkg.torch.onnx.name_scopes"), "")
        if node.op_type == "MatMul" and f"{module}'" in scopes:
            return next(initializers[n] for n in node.input if n in initializers)
    raise AssertionError(f"no MatMul of {module} in the export")

"""Hugging Face folders export with no architecture given: strict loading by the class's rules,
the task's inputs and the model's output names, checked at 2+ shapes with padded masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from core.export import export  # noqa: E402
from core.hf.model import load_hf_model  # noqa: E402
from core.hf.pooling import mean_pool_formula  # noqa: E402
from core.inputs import example_inputs  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


def _export(hf, out: Path, exporter: str = "legacy") -> tuple[dict, ort.InferenceSession]:
    """The export the CLI runs for a folder (legacy exporter, second shape must match), or the
    torch.export-based one."""
    [result] = export(hf.module, hf.specs, ["onnx"], out,
                      hf.export_options(name="model", onnx_exporter=exporter))
    assert result.ok, result.error
    return result.to_dict(), ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])


def _padded_cases(hf) -> list[dict[str, torch.Tensor]]:
    """Two shapes besides the export's own, each with rows of different lengths."""
    cases = []
    for seed, sizes in ((5, {"batch": 3, "sequence": 11}), (6, {"batch": 1, "sequence": 30})):
        inputs = example_inputs(hf.specs, sizes, seed)
        if "attention_mask" in inputs and sizes["batch"] > 1:
            inputs["attention_mask"][1:, -4:] = 0  # surely padded, whatever the seed gave
        cases.append(inputs)
    return cases


def _max_diff(hf, session, inputs: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        expected = hf.module(*inputs.values())
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = hf_folders.bert_folder(tmp_path_factory.mktemp("bert"))
    hf = load_hf_model(folder)
    return hf, *_export(hf, tmp_path_factory.mktemp("bert_out"), "dynamo")


def test_bert_loads_strictly_and_names_the_stale_buffer(bert):
    hf, _, _ = bert
    assert hf.task == "feature-extraction" and hf.model_class == "BertModel"
    assert hf.report.ok and not hf.report.unexpected and not hf.report.missing
    assert "embeddings.position_ids" in hf.report.ignored
    assert "rebuilds itself" in hf.report.ignored["embeddings.position_ids"]


def test_bert_inputs_and_outputs_are_the_models_own(bert):
    hf, result, session = bert
    names = ["input_ids", "attention_mask", "token_type_ids"]
    assert [i.name for i in session.get_inputs()] == names == result["input_names"]
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state", "pooler_output"]
    for i in session.get_inputs():
        assert all(isinstance(d, str) for d in i.shape), i.shape  # batch and sequence dynamic
    ids, mask, types = hf.specs
    assert ids.values == (0, hf_folders.BERT["vocab_size"] - 1)
    assert ids.dims[1].max == hf_folders.BERT["max_position_embeddings"]
    assert mask.padded and types.values == (0, 1)
    assert len(result["checked_shapes"]) == 2  # the example shape and a second one


def test_bert_artefact_matches_eager_at_more_shapes_with_padding(bert):
    hf, _, session = bert
    for inputs in _padded_cases(hf):
        assert (inputs["attention_mask"] == 0).any() or inputs["input_ids"].shape[0] == 1
        assert _max_diff(hf, session, inputs) < 1e-4


def test_padding_changes_the_output(bert):
    """The mask really reaches the graph (an ONNX file taking only input_ids would ignore it)."""
    hf, _, session = bert
    inputs = example_inputs(hf.specs, {"batch": 2, "sequence": 10}, 3)
    inputs["attention_mask"][:] = 1
    full = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    assert _max_diff(hf, session, inputs) < 1e-4  # no padding at all is right too
    inputs["attention_mask"][1, 5:] = 0
    padded = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    assert np.abs(full[0] - padded[0]).max() < 1e-5  # the unpadded row is untouched
    assert np.abs(full[1, :5] - padded[1, :5]).max() > 1e-4


def test_gpt2_causal_lm_without_cache(tmp_path):
    hf = load_hf_model(hf_folders.gpt2_folder(tmp_path / "gpt2"))
    assert hf.task == "causal-lm" and hf.output_names == ["logits"]
    # no token types in GPT-2; position ids (as Optimum) so left-padded batches work
    assert [s.name for s in hf.specs] == ["input_ids", "attention_mask", "position_ids"]
    assert "lm_head.weight" in hf.report.tied  # tied to wte, not stored
    result, session = _export(hf, tmp_path / "out")
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert result["exporter"] == "legacy" and len(result["checked_shapes"]) == 2
    for inputs in _padded_cases(hf):
        assert _max_diff(hf, session, inputs) < 1e-4
    left = example_inputs(hf.specs, {"batch": 2, "sequence": 6}, 2)  # row 1 padded on the left
    left["attention_mask"][1] = torch.tensor([0, 0, 1, 1, 1, 1])
    left["position_ids"][1] = torch.tensor([1, 1, 0, 1, 2, 3])
    assert _max_diff(hf, session, left) < 1e-4


def test_vit_image_classification(tmp_path):
    hf = load_hf_model(hf_folders.vit_folder(tmp_path / "vit"))
    assert hf.task == "image-classification" and hf.output_names == ["logits"]
    [spec] = hf.specs
    assert spec.name == "pixel_values" and [d.value for d in spec.dims[1:]] == [3, 32, 32]
    result, session = _export(hf, tmp_path / "out")
    for batch in (1, 5):
        inputs = example_inputs(hf.specs, {"batch": batch}, batch)
        assert _max_diff(hf, session, inputs) < 1e-4


def test_pooling_inside_the_graph_matches_the_formula(tmp_path):
    folder = hf_folders.sentence_transformers_folder(tmp_path / "st")
    pooled = load_hf_model(folder, pooling=True)
    plain = load_hf_model(folder)
    assert pooled.output_names == ["sentence_embedding"]
    result, session = _export(pooled, tmp_path / "out")
    for inputs in _padded_cases(pooled):
        with torch.no_grad():
            tokens = plain.module(*inputs.values())[0]
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # the documented formula
        expected = torch.nn.functional.normalize(mean, p=2, dim=1)
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        assert np.abs(got - expected.numpy()).max() < 1e-5
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    _sentence_transformers_agrees(folder, pooled)


def _sentence_transformers_agrees(folder: Path, pooled) -> None:
    """Where sentence-transformers is installed, its own Pooling (read from the folder's 1_Pooling)
    and Normalize modules give the same sentence embedding from the same token embeddings."""
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
    except ImportError:
        try:
            from sentence_transformers.models import Normalize, Pooling
        except ImportError:
            return  # not installed: the formula check above stands in for it
    pooling = Pooling.load(str(folder / "1_Pooling"), local_files_only=True)
    inputs = example_inputs(pooled.specs, {"batch": 3, "sequence": 9}, 1)
    inputs["attention_mask"][1:, -3:] = 0
    with torch.no_grad():
        tokens = pooled.module.inner(*inputs.values())[0]
        features = pooling({"token_embeddings": tokens, "attention_mask": inputs["attention_mask"]})
        theirs = Normalize()(features)["sentence_embedding"]
        ours = pooled.module(*inputs.values())[0]
    assert torch.allclose(theirs, ours, atol=1e-6)


def test_the_formula_helper_pools_only_unpadded_tokens():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool_formula(tokens, mask).tolist() == [[2.0, 3.0]]
    assert mean_pool_formula(tokens, mask, ["max_tokens"]).tolist() == [[3.0, 4.0]]
    assert mean_pool_formula(tokens, mask, ["cls_token"]).tolist() == [[1.0, 2.0]]

"""Strict loading by the model class's own rules, each forgiven key named with its reason."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from core.errors import ExportError  # noqa: E402
from core.hf.model import load_hf_model  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


def test_head_keys_are_ignored_when_exporting_the_base_model(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "clf"
    BertForSequenceClassification(BertConfig(**hf_folders.BERT, num_labels=3)).save_pretrained(folder)
    hf = load_hf_model(folder, "feature-extraction")
    assert hf.model_class == "BertModel" and hf.report.prefix_stripped == "bert."
    assert set(hf.report.ignored) == {"classifier.weight", "classifier.bias"}
    assert all("task head" in why for why in hf.report.ignored.values())
    assert load_hf_model(folder).output_names == ["logits"]  # its own task: the head is used


def test_gpt2_old_attention_mask_buffers(tmp_path):
    folder = hf_folders.gpt2_folder(tmp_path / "gpt2")
    weights = load_file(folder / "model.safetensors")
    for layer in range(2):  # what GPT-2 checkpoints saved before the buffer became non-persistent
        weights[f"transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(1, 1, 40, 40))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    hf = load_hf_model(folder)
    assert hf.report.ok
    assert "GPT2LMHeadModel ignores it on load" in hf.report.ignored["transformer.h.0.attn.bias"]
    assert hf.report.tied == {"lm_head.weight": "transformer.wte.weight"}


def test_a_missing_weight_is_not_forgiven(tmp_path):
    folder = hf_folders.bert_folder(tmp_path / "bert")
    weights = load_file(folder / "model.safetensors")
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ExportError, match=r"do not fit .*1 missing"):
        load_hf_model(folder)
    loose = load_hf_model(folder, strict=False)
    assert loose.report.missing == ["encoder.layer.1.output.dense.weight"]


def test_saved_layout_differs_from_the_class_and_is_renamed_by_transformers_rules(tmp_path):
    """transformers 5 names ViT's tensors layers.N.attention.q_proj but saves (and the Hub holds)
    encoder.layer.N.attention.attention.query; the class's WeightRenaming rules map them back."""
    from transformers import ViTForImageClassification

    folder = hf_folders.vit_folder(tmp_path / "vit")
    saved = set(load_file(folder / "model.safetensors"))
    reference = ViTForImageClassification.from_pretrained(folder).eval()
    hf = load_hf_model(folder)
    assert hf.report.ok and not hf.report.missing and not hf.report.unexpected
    if saved != set(reference.state_dict()):
        assert hf.report.renamed > 0 and any("saved layout differs" in n for n in hf.notes)
    else:
        assert hf.report.renamed == 0
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(hf.module(pixels)[0], reference(pixel_values=pixels).logits, atol=1e-5)


def test_weights_file_beside_a_config(tmp_path):
    folder = hf_folders.bert_folder(tmp_path / "bert")
    hf = load_hf_model(folder / "model.safetensors")
    assert hf.model_class == "BertModel" and hf.report.ok
    assert list(hf.report.ignored) == ["embeddings.position_ids"]

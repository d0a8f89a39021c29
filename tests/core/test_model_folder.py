"""A Hugging Face model folder opens as the weights inside it, with its config's summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, GPT2Config

from core.convert import convert
from core.errors import CheckpointError
from core.formats import folder, open_checkpoint
from core.inspect import inspect_checkpoint
from tests.core.test_hf_bin_shards import loaded_shards, tiny_state_dict, write_bin_shards


def tiny_bert(tmp_path: Path, **save_options) -> Path:
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    out = tmp_path / "bert"
    BertModel(config).save_pretrained(out, **save_options)
    return out


def test_a_saved_bert_folder_opens_with_its_config(tmp_path):
    model_dir = tiny_bert(tmp_path)
    ckpt = open_checkpoint(model_dir)
    assert ckpt.path == model_dir / "model.safetensors"
    expected = load_file(model_dir / "model.safetensors")
    assert set(ckpt.sections["model"].tensors) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(ckpt.read(name), tensor)
    config = json.loads((model_dir / "config.json").read_text())
    summary = ckpt.metadata["config"]
    assert summary["model_type"] == "bert" == config["model_type"]
    assert summary["architectures"] == ["BertModel"]
    assert summary["hidden_size"] == 16 and summary["num_hidden_layers"] == 2
    assert summary["vocab_size"] == 50
    assert summary["torch_dtype"] == config.get("torch_dtype", config.get("dtype"))
    as_json = inspect_checkpoint(ckpt).to_dict()
    assert as_json["metadata"]["config"] == summary
    assert as_json["metadata"]["folder"] == str(model_dir)


def test_a_sharded_safetensors_folder_opens_through_its_index(tmp_path):
    model_dir = tiny_bert(tmp_path, max_shard_size="10KB")
    assert not (model_dir / "model.safetensors").exists()
    ckpt = open_checkpoint(model_dir)
    assert ckpt.path.name == "model.safetensors.index.json"
    assert ckpt.format == "safetensors-sharded" and len(ckpt.metadata["shards"]) > 1
    assert ckpt.metadata["config"]["model_type"] == "bert"


def test_bin_shards_folder_opens_and_converts(tmp_path):
    model_dir = tmp_path / "m"
    write_bin_shards(model_dir, tiny_state_dict())
    GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=20).save_pretrained(model_dir)
    ckpt = open_checkpoint(model_dir)
    assert ckpt.format == "torch-sharded"
    summary = ckpt.metadata["config"]
    assert (summary["model_type"], summary["hidden_size"], summary["num_hidden_layers"],
            summary["vocab_size"]) == ("gpt2", 8, 1, 20)
    dest = tmp_path / "out.safetensors"
    convert(model_dir, dest)
    written = load_file(dest)
    for name, tensor in loaded_shards(model_dir).items():
        assert torch.equal(written[name], tensor)


@pytest.mark.parametrize("present", [
    ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"],
    ["model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"],
    ["pytorch_model.bin", "pytorch_model.bin.index.json"],
])
def test_weights_are_chosen_in_transformers_order(tmp_path, present):
    for name in present:
        (tmp_path / name).write_bytes(b"x")
    assert folder.weights_in(tmp_path).name == present[0]


def test_the_order_is_transformers_own():
    from transformers.utils import (
        SAFE_WEIGHTS_INDEX_NAME,
        SAFE_WEIGHTS_NAME,
        WEIGHTS_INDEX_NAME,
        WEIGHTS_NAME,
    )

    assert folder.WEIGHT_FILES == (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME,
                                   WEIGHTS_INDEX_NAME)


def test_a_single_pytorch_model_bin(tmp_path):
    state = tiny_state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.format == "torch-zip" and "config" not in ckpt.metadata
    assert torch.equal(ckpt.read("pooler.dense.weight"), state["pooler.dense.weight"])


def test_a_folder_without_weights_says_what_was_expected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(tmp_path)
    message = caught.value.message
    assert "holds no model weights" in message and "model.safetensors" in message
    assert "pytorch_model.bin.index.json" in message
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="'other.safetensors': open that file instead"):
        open_checkpoint(tmp_path)


def test_a_damaged_config_is_a_finding_not_a_failure(tmp_path):
    model_dir = tiny_bert(tmp_path)
    (model_dir / "config.json").write_text("{not json")
    ckpt = open_checkpoint(model_dir)
    assert "config" not in ckpt.metadata
    [finding] = [f for f in ckpt.findings if f.name == "config.json"]
    assert "could not be read as JSON" in finding.message


def test_multimodal_config_sizes_come_from_text_config():
    summary = folder.summarise({"model_type": "llava", "architectures": ["Llava"],
                                "text_config": {"hidden_size": 64, "num_hidden_layers": 3,
                                                "vocab_size": 99, "model_type": "llama"}})
    assert summary == {"model_type": "llava", "architectures": ["Llava"], "hidden_size": 64,
                       "num_hidden_layers": 3, "vocab_size": 99}


def test_damaged_weights_in_a_folder_are_still_one_sentence(tmp_path):
    model_dir = tiny_bert(tmp_path)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(model_dir)
    assert "safetensors" in caught.value.message and "\n" not in caught.value.message

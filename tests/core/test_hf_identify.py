"""`identify`: a folder by its config; a bare checkpoint by its key layout, with the values the
shapes determine and the ones they cannot stated as such."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from core.errors import CheckpointError  # noqa: E402
from core.hf.identify import identify, render  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


def _save(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def test_bare_bert_state_dict(tmp_path):
    from transformers import BertConfig, BertModel

    path = tmp_path / "weights.pt"
    torch.save(BertModel(BertConfig(**hf_folders.BERT)).state_dict(), path)
    result = identify(path)
    assert (result.source, result.family, result.model_type) == ("key layout", "BERT", "bert")
    b = hf_folders.BERT
    assert result.determined == {"vocab_size": b["vocab_size"], "hidden_size": b["hidden_size"],
                                 "num_hidden_layers": b["num_hidden_layers"],
                                 "intermediate_size": b["intermediate_size"],
                                 "max_position_embeddings": b["max_position_embeddings"],
                                 "type_vocab_size": b["type_vocab_size"]}
    assert "num_attention_heads" in result.undetermined
    assert "num_attention_heads" not in result.determined  # never guessed
    assert "not determined" in render(result)


def test_prefixed_classifier_checkpoint(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(**hf_folders.BERT, num_labels=5)
    result = identify(_save(BertForSequenceClassification(config), tmp_path / "w.safetensors"))
    assert result.family == "BERT" and result.determined["num_labels"] == 5
    assert "task" in result.undetermined  # sequence vs token classification: same shapes
    assert any("prefix 'bert.'" in e for e in result.evidence)


def test_gpt2_llama_vit_clip_roberta_layouts(tmp_path):
    from transformers import (
        CLIPConfig,
        CLIPModel,
        GPT2Config,
        GPT2Model,
        LlamaConfig,
        LlamaForCausalLM,
        RobertaConfig,
        RobertaModel,
        ViTConfig,
        ViTForImageClassification,
    )

    small = {"num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 40}
    models = {
        "gpt2": GPT2Model(GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=50, n_positions=24)),
        "llama": LlamaForCausalLM(LlamaConfig(hidden_size=32, vocab_size=64, num_key_value_heads=1,
                                              tie_word_embeddings=False, **small)),
        "vit": ViTForImageClassification(ViTConfig(hidden_size=32, image_size=32, patch_size=8,
                                                   num_labels=4, **small)),
        "clip": CLIPModel(CLIPConfig(
            text_config={"hidden_size": 32, "vocab_size": 60, "max_position_embeddings": 20, **small},
            vision_config={"hidden_size": 32, "image_size": 32, "patch_size": 8, **small},
            projection_dim=16)),
        "roberta": RobertaModel(RobertaConfig(hidden_size=32, vocab_size=70, type_vocab_size=1,
                                              **small)),
    }
    found = {name: identify(_save(m, tmp_path / f"{name}.safetensors")) for name, m in models.items()}
    assert {n: r.family for n, r in found.items()} == {
        "gpt2": "GPT-2", "llama": "LLaMA-style", "vit": "ViT", "clip": "CLIP", "roberta": "RoBERTa"}
    assert found["gpt2"].determined["n_layer"] == 3 and "n_head" in found["gpt2"].undetermined
    llama = found["llama"].determined
    assert (llama["hidden_size"], llama["intermediate_size"], llama["num_hidden_layers"]) == (32, 40, 3)
    assert llama["num_key_value_heads x head_dim"] == 16  # 1 kv head x (32 / 2)
    assert "max_position_embeddings" in found["llama"].undetermined
    vit = found["vit"].determined
    assert (vit["image_size"], vit["patch_size"], vit["num_labels"], vit["num_hidden_layers"]) == \
        (32, 8, 4, 3)
    assert found["clip"].determined["vision_config.image_size"] == 32
    assert found["clip"].determined["text_config.vocab_size"] == 60


def test_folder_by_its_config(tmp_path):
    folder = hf_folders.gpt2_folder(tmp_path / "gpt2")
    result = identify(folder)
    assert result.source == "config.json" and result.model_type == "gpt2"
    assert result.architectures == ["GPT2LMHeadModel"] and result.task == "causal-lm"
    assert result.determined["n_head"] == 4  # the config states it
    assert not any("do not belong together" in e for e in result.evidence)


def test_config_that_disagrees_with_the_weights(tmp_path):
    folder = hf_folders.bert_folder(tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"vocab_size": 999}))
    result = identify(folder)
    assert any("vocab_size = 120 but config.json says 999" in e for e in result.evidence)


def test_remote_code_config_is_only_described(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "m.X"}}))
    result = identify(folder)
    assert result.source == "config.json" and any("never run" in e for e in result.evidence)


def test_unrecognised_and_missing(tmp_path):
    path = save_file({"a.weight": torch.zeros(2, 2)}, tmp_path / "w.safetensors") or \
        tmp_path / "w.safetensors"
    result = identify(path)
    assert not result.recognised and result.tensors == 1
    with pytest.raises(CheckpointError, match="does not exist"):
        identify(tmp_path / "nope.safetensors")

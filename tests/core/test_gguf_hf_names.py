"""GGUF -> safetensors with Hugging Face names (convert's hf_names option / --hf-names): a tiny
transformers LLaMA written to GGUF the way llama.cpp's convert_hf_to_gguf.py does (names through
the gguf package's table, query/key rows permuted for rotary), then converted back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.cli.main import main
from core.convert import convert
from core.convert.transforms import ConvertOptions
from core.errors import CheckpointError

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")
Q = gguf.GGMLQuantizationType
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def tiny_llama_state() -> dict[str, torch.Tensor]:
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                      num_key_value_heads=KV_HEADS, tie_word_embeddings=False)
    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in transformers.LlamaForCausalLM(config).state_dict().items()
            if not k.endswith("rotary_emb.inv_freq")}


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """LlamaModel.permute of convert_hf_to_gguf.py."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_llama_gguf(path: Path, state: dict[str, torch.Tensor], quantise_q: bool = False) -> None:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, LAYERS)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    for hf_name, tensor in state.items():
        array = tensor.numpy()
        if hf_name.endswith("q_proj.weight"):
            array = permute(array, HEADS)
        elif hf_name.endswith("k_proj.weight"):
            array = permute(array, KV_HEADS)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        if quantise_q and hf_name.endswith("q_proj.weight"):
            writer.add_tensor(name, gguf.quants.quantize(array, Q.Q8_0), raw_dtype=Q.Q8_0)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_hf_names_give_back_the_transformers_state_dict(tmp_path):
    state = tiny_llama_state()
    write_llama_gguf(tmp_path / "m.gguf", state)
    result = convert(tmp_path / "m.gguf", tmp_path / "m.safetensors",
                     options=ConvertOptions(hf_names=True))
    written = load_file(tmp_path / "m.safetensors")
    assert written.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(written[name], tensor), name
    assert len(result.renamed) == len(state)
    without = convert(tmp_path / "m.gguf", tmp_path / "plain.safetensors")
    assert not without.renamed and "blk.0.attn_q.weight" in load_file(tmp_path / "plain.safetensors")


def test_quantised_query_rows_are_put_back_after_dequantising(tmp_path):
    state = tiny_llama_state()
    write_llama_gguf(tmp_path / "m.gguf", state, quantise_q=True)
    convert(tmp_path / "m.gguf", tmp_path / "m.safetensors", options=ConvertOptions(hf_names=True))
    written = load_file(tmp_path / "m.safetensors")
    for layer in range(LAYERS):
        name = f"model.layers.{layer}.self_attn.q_proj.weight"
        original = state[name].numpy()
        expected = gguf.quants.dequantize(gguf.quants.quantize(original, Q.Q8_0), Q.Q8_0)
        assert np.array_equal(written[name].numpy(), expected)
        assert not np.array_equal(expected, permute(expected, HEADS))  # the order matters here


def test_the_cli_option_and_its_refusals(tmp_path, capsys):
    write_llama_gguf(tmp_path / "m.gguf", tiny_llama_state())
    assert main(["convert", str(tmp_path / "m.gguf"), "--hf-names", "--dtype", "bf16",
                 "-o", str(tmp_path / "m.safetensors")]) == 0
    assert "model.layers.1.mlp.gate_proj.weight" in load_file(tmp_path / "m.safetensors")
    assert "renamed" in capsys.readouterr().out
    other = tmp_path / "other.safetensors"
    convert(tmp_path / "m.safetensors", other)
    with pytest.raises(CheckpointError, match="applies to GGUF files only"):
        convert(other, tmp_path / "x.safetensors", options=ConvertOptions(hf_names=True))


def test_names_outside_the_table_are_kept_with_a_note(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "llama")
    writer.add_head_count(3)  # does not divide attn_q's 4 rows into rotary halves per head
    writer.add_tensor("blk.0.attn_q.weight", np.ones((4, 32), dtype=np.float32))
    writer.add_tensor("mystery.weight", np.ones((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = convert(tmp_path / "odd.gguf", tmp_path / "odd.safetensors",
                     options=ConvertOptions(hf_names=True))
    written = load_file(tmp_path / "odd.safetensors")
    assert set(written) == {"model.layers.0.self_attn.q_proj.weight", "mystery.weight"}
    assert any("keep their llama.cpp names" in n and "mystery.weight" in n for n in result.notes)
    assert any("written as stored" in n for n in result.notes)

"""Sharded torch.save checkpoints as Hugging Face writes them: `pytorch_model.bin.index.json`
beside `pytorch_model-0000N-of-00003.bin` shards."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.convert import convert
from core.diff.structure import diff_files
from core.errors import CheckpointError, CorruptFile
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint

INDEX = "pytorch_model.bin.index.json"


def tiny_state_dict() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "embeddings.word_embeddings.weight": torch.randn(20, 8, generator=gen),
        "encoder.layer.0.attention.self.query.weight": torch.randn(8, 8, generator=gen),
        "encoder.layer.0.attention.self.query.bias": torch.randn(8, generator=gen),
        "encoder.layer.0.output.dense.weight": torch.randn(8, 8, generator=gen).half(),
        "encoder.layer.0.output.LayerNorm.weight": torch.ones(8, dtype=torch.bfloat16),
        "embeddings.position_ids": torch.arange(16).unsqueeze(0),
        "pooler.dense.weight": torch.randn(8, 8, generator=gen),
    }


def write_bin_shards(folder: Path, state: dict[str, torch.Tensor], shards: int = 3,
                     legacy: bool = False) -> Path:
    """What transformers' save_pretrained(safe_serialization=False, max_shard_size=...) writes."""
    folder.mkdir(parents=True, exist_ok=True)
    names, weight_map = list(state), {}
    for i in range(shards):
        shard = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {name: state[name] for name in names[i::shards]}
        torch.save(part, folder / shard, _use_new_zipfile_serialization=not legacy)
        weight_map.update(dict.fromkeys(part, shard))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX).write_text(json.dumps(index, indent=2))
    return folder / INDEX


def loaded_shards(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("pytorch_model-*.bin")):
        out.update(torch.load(shard, weights_only=True))
    return out


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_inspect_lists_every_tensor_of_every_shard(tmp_path, legacy):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict(), legacy=legacy)
    ckpt = open_checkpoint(index)
    expected = loaded_shards(tmp_path / "m")
    assert ckpt.format == "torch-sharded"
    assert ckpt.weights == "model"
    assert len(ckpt.metadata["shards"]) == 3
    result = inspect_checkpoint(ckpt)
    listed = {t.name: t for view in result.sections for t in view.tensors}
    assert set(listed) == set(expected)
    for name, tensor in expected.items():
        assert listed[name].shape == tuple(tensor.shape)
        assert listed[name].dtype == str(tensor.dtype).removeprefix("torch.")
        assert torch.equal(ckpt.read(name), tensor)
    assert listed["embeddings.position_ids"].role == "buffer"
    assert result.totals.tensors == len(expected)


def test_convert_to_safetensors_and_sharded_safetensors(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    expected = loaded_shards(tmp_path / "m")
    single = tmp_path / "model.safetensors"
    convert(index, single)
    written = load_file(single)
    assert written.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(written[name], tensor)
    out = tmp_path / "sharded"
    result = convert(index, out, "safetensors-sharded", max_shard_size=600)
    assert len(result.outputs) > 2
    back = open_checkpoint(out / "model.safetensors.index.json")
    assert back.format == "safetensors-sharded"
    for name, tensor in expected.items():
        assert torch.equal(back.read(name), tensor)


def test_diff_against_the_converted_copy_and_a_changed_copy(tmp_path):
    state = tiny_state_dict()
    index = write_bin_shards(tmp_path / "m", state)
    single = tmp_path / "model.safetensors"
    convert(index, single)
    same = diff_files(index, single, values=True)
    assert same.totals["same"] == len(state) and bool(same)
    assert same.value_totals["identical"] == len(state)
    state["pooler.dense.weight"] = state["pooler.dense.weight"] + 1
    changed = write_bin_shards(tmp_path / "changed", state)
    other = diff_files(index, changed, values=True)
    assert other.value_totals["different"] == 1
    [key] = [k for s in other.sections for k in s.keys if k.values and k.values.status == "different"]
    assert key.name == "pooler.dense.weight"


def test_a_shard_with_code_is_a_finding_and_nothing_runs(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())

    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    shard = json.loads(index.read_text())["weight_map"]["pooler.dense.weight"]
    part = torch.load(tmp_path / "m" / shard, weights_only=True)
    part["extra"] = Boom()
    torch.save(part, tmp_path / "m" / shard, pickle_module=pickle)
    ckpt = open_checkpoint(index)
    [finding] = [f for f in ckpt.findings if f.kind == "global"]
    assert finding.name == "builtins.print" and finding.where.startswith(shard)
    assert "pooler.dense.weight" in ckpt.sections["model"].tensors


def test_a_shard_that_is_neither_format_is_one_sentence(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    shard = json.loads(index.read_text())["weight_map"]["pooler.dense.weight"]
    (tmp_path / "m" / shard).write_bytes(b"not a checkpoint at all")
    with pytest.raises(CorruptFile, match=f"The shard '{shard}' is neither"):
        open_checkpoint(index)


def test_a_truncated_shard_is_one_sentence(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    shard = tmp_path / "m" / json.loads(index.read_text())["weight_map"]["pooler.dense.weight"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(index)
    assert "\n" not in caught.value.message and caught.value.message.endswith(".")
    assert f"'{shard.name}'" in caught.value.message  # the user opened the index: name the shard


def test_a_missing_shard_is_named(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    shard = json.loads(index.read_text())["weight_map"]["pooler.dense.weight"]
    (tmp_path / "m" / shard).unlink()
    with pytest.raises(CheckpointError, match=f"The shard '{shard}' is missing"):
        open_checkpoint(index)


def test_the_folder_and_the_index_path_open_the_same_checkpoint(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    by_index, by_folder = open_checkpoint(index), open_checkpoint(tmp_path / "m")
    assert by_folder.format == by_index.format == "torch-sharded"
    names = {t.name for t in by_index.all_tensors()}
    assert names == {t.name for t in by_folder.all_tensors()} == set(tiny_state_dict())
    for name, tensor in loaded_shards(tmp_path / "m").items():
        assert torch.equal(by_folder.read(name), tensor)


def test_an_index_that_lies_about_a_shard_is_one_sentence(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    listed = json.loads(index.read_text())
    shard = listed["weight_map"]["pooler.dense.weight"]
    listed["weight_map"]["ghost.weight"] = shard
    index.write_text(json.dumps(listed))
    with pytest.raises(CorruptFile, match=f"'ghost.weight' is in '{shard}', but it is not there"):
        open_checkpoint(index)

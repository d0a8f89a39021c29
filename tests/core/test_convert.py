"""Conversion round trips: every fixture that opens -> every target, bit for bit, plus transforms."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import blake3
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from core.convert import TARGETS, ConvertOptions, convert, default_destination
from core.convert.safetensors_sharded import INDEX_NAME
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.formats.safetensors import ALIASES_KEY
from core.report import to_json
from tests.fixtures.models import FixtureFiles

WEIGHTS_KEY = {"training": "model_state_dict", "lightning": "state_dict", "ema": "model"}
FIXTURES = ["state_dict", "renamed_archive", "legacy", "dtypes", "dtypes_legacy", "training",
            "lightning", "ema", "data_parallel", "full_module", "safetensors", "dtypes_safetensors",
            "sharded_index", "torchscript", "pt2", "onnx", "onnx_external"]


def same_bits(ours: torch.Tensor, theirs: torch.Tensor, name: str = "") -> None:
    assert ours.dtype == theirs.dtype, name
    assert tuple(ours.shape) == tuple(theirs.shape), name
    a = ours.contiguous().reshape(-1).view(torch.uint8)
    b = theirs.contiguous().reshape(-1).view(torch.uint8)
    assert torch.equal(a, b), name


def expected_tensors(files: FixtureFiles, key: str) -> dict[str, torch.Tensor]:
    """What the real libraries load from a fixture (the weights a user means)."""
    path = files[key]
    if key in ("safetensors", "dtypes_safetensors"):
        return load_file(path)
    if key == "sharded_index":
        return load_sharded(path)
    if key == "torchscript":
        return dict(torch.jit.load(path).state_dict())
    if key == "pt2":
        return dict(torch.export.load(path).state_dict)
    if key.startswith("onnx"):
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(path)
        return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
                for i in proto.graph.initializer}
    trusted = key in ("full_module", "training")  # our own test files with a module / TorchVersion
    obj = torch.load(path, weights_only=not trusted)
    if key == "full_module":
        return obj.state_dict()
    return obj[WEIGHTS_KEY[key]] if key in WEIGHTS_KEY else obj


def load_sharded(index_path: Path) -> dict[str, torch.Tensor]:
    """transformers-style: open the index, then read each tensor from the shard it names."""
    index = json.loads(Path(index_path).read_text())
    out = {}
    for name, shard in index["weight_map"].items():
        with safe_open(Path(index_path).parent / shard, framework="pt") as f:
            out[name] = f.get_tensor(name)
    return out


def load_output(path: Path, target: str) -> dict[str, torch.Tensor]:
    """Load a converted output with the real library; tied names come back from the metadata."""
    if target == "pt":
        return torch.load(path, weights_only=True)
    if target == "safetensors-sharded":
        index = json.loads((path / INDEX_NAME).read_text())
        tensors, aliases = load_sharded(path / INDEX_NAME), index["metadata"].get(ALIASES_KEY)
    else:
        with safe_open(path, framework="pt") as f:
            aliases = (f.metadata() or {}).get(ALIASES_KEY)
        tensors = load_file(path)
    for alias, name in json.loads(aliases or "{}").items():
        tensors[alias] = tensors[name]
    return tensors


def opened(files: FixtureFiles, key: str):
    try:
        return open_checkpoint(files[key])
    except CheckpointError as exc:  # a reader still being finished by its owner
        pytest.skip(f"{key} does not open yet: {exc}")


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("key", FIXTURES)
def test_round_trip_is_bit_exact(files, tmp_path, key, target):
    opened(files, key)
    dest = tmp_path / ("out" if target == "safetensors-sharded" else f"out.{target}")
    result = convert(files[key], dest, target, max_shard_size=600)
    loaded = load_output(dest, target)
    expected = expected_tensors(files, key)
    assert set(loaded) == set(expected)
    for name, tensor in expected.items():
        same_bits(loaded[name], tensor, name)
    assert result.verification["passed"] and result.tensors_written + len(result.aliases) == len(
        expected)
    assert [p.name for p in tmp_path.rglob("*.partial")] == []


def test_tied_weights_are_written_once_and_come_back_tied(files, tmp_path):
    sd = torch.load(files["state_dict"], weights_only=True)
    with pytest.raises(RuntimeError, match="share memory"):  # what we do instead of failing
        save_file(sd, tmp_path / "lib.safetensors")
    st = tmp_path / "tied.safetensors"
    result = convert(files["state_dict"], st)
    assert result.aliases == {"head.weight": "embed.weight"}
    with safe_open(st, framework="pt") as f:
        assert "head.weight" not in set(f.keys())
        assert json.loads(f.metadata()[ALIASES_KEY]) == {"head.weight": "embed.weight"}
    # our reader gives the tied name back, so converting back to .pt re-ties the weights
    assert "head.weight" in convert(st, tmp_path / "again.safetensors").aliases
    back = tmp_path / "back.pt"
    convert(st, back, "pt")
    loaded = torch.load(back, weights_only=True)
    assert loaded["head.weight"].data_ptr() == loaded["embed.weight"].data_ptr()
    # inspecting our output shows both names, sharing one storage, like the source did
    opened = open_checkpoint(st).sections["model"].tensors
    assert opened["head.weight"].storage == opened["embed.weight"].storage
    same_bits(loaded["head.weight"], sd["head.weight"])


def test_views_are_written_contiguous(files, tmp_path):
    zoo = torch.load(files["dtypes"], weights_only=True)
    convert(files["dtypes"], tmp_path / "zoo.safetensors")
    loaded = load_file(tmp_path / "zoo.safetensors")
    for name in ("transposed", "row_view"):
        same_bits(loaded[name], zoo[name].contiguous(), name)


@pytest.mark.parametrize("target", ["safetensors", "pt"])
@pytest.mark.parametrize("dtype, torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16),
                                                ("fp32", torch.float32)])
def test_cast_changes_only_floating_tensors(files, tmp_path, target, dtype, torch_dtype):
    zoo = torch.load(files["dtypes"], weights_only=True)
    dest = tmp_path / f"cast.{target}"
    result = convert(files["dtypes"], dest, target, ConvertOptions(dtype=dtype))
    loaded = load_output(dest, target)
    for name, tensor in zoo.items():
        if tensor.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            same_bits(loaded[name], tensor.to(torch_dtype), name)
            assert (name in result.dtype_changes) == (tensor.dtype != torch_dtype)
        else:
            same_bits(loaded[name], tensor, name)
            assert name not in result.dtype_changes


def test_cast_keeps_num_batches_tracked_int64(files, tmp_path):
    dest = tmp_path / "half.safetensors"
    convert(files["state_dict"], dest, options=ConvertOptions(dtype="bf16"))
    loaded = load_file(dest)
    assert loaded["bn.num_batches_tracked"].dtype == torch.int64
    assert loaded["bn.num_batches_tracked"].item() == 7
    assert loaded["conv.weight"].dtype == torch.bfloat16


def test_unknown_cast_target_is_refused(files, tmp_path):
    with pytest.raises(CheckpointError, match="fp16, bf16 or fp32"):
        convert(files["state_dict"], tmp_path / "x.safetensors", options=ConvertOptions(dtype="int8"))
    assert list(tmp_path.iterdir()) == []


def test_lightning_prefix_strip_and_metadata(files, tmp_path):
    dest = tmp_path / "plain.safetensors"
    result = convert(files["lightning"], dest, options=ConvertOptions(strip_prefix=("model.",)))
    loaded = load_output(dest, "safetensors")
    assert set(loaded) == set(torch.load(files["state_dict"], weights_only=True))
    assert result.renamed["model.conv.weight"] == "conv.weight"
    assert result.dropped_sections == {"optimizer": 21}
    with safe_open(dest, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["epoch"] == "5" and meta["global_step"] == "1200"
    assert json.loads(meta["hyper_parameters"]) == {"lr": 0.001, "layers": [4, 8]}
    record = json.loads(meta["checkpoint_studio"])
    assert record["source_blake3"] == blake3.blake3(files["lightning"].read_bytes()).hexdigest()
    assert "source_sha256" not in record
    assert "strip-prefix=model." in record["transforms"]
    assert result.source_hash == {"algorithm": "blake3", "digest": record["source_blake3"]}


def test_the_source_can_be_identified_by_its_sha256(files, tmp_path):
    """The hash the Hugging Face Hub shows for a file, when asked for; an unknown one is refused."""
    dest = tmp_path / "plain.safetensors"
    result = convert(files["lightning"], dest, source_hash="sha256")
    with safe_open(dest, framework="pt") as f:
        record = json.loads(f.metadata()["checkpoint_studio"])
    expected = hashlib.sha256(files["lightning"].read_bytes()).hexdigest()
    assert record["source_sha256"] == expected and "source_blake3" not in record
    assert result.source_hash == {"algorithm": "sha256", "digest": expected}
    with pytest.raises(CheckpointError, match="'md5' is not a way to identify the source"):
        convert(files["lightning"], tmp_path / "other.safetensors", source_hash="md5")
    assert not (tmp_path / "other.safetensors").exists()


def test_training_checkpoint_to_weights_only(files, tmp_path):
    dest = tmp_path / "weights.pt"
    result = convert(files["training"], dest, "pt")
    loaded = torch.load(dest, weights_only=True)
    assert set(loaded) == set(torch.load(files["training"], weights_only=False)["model_state_dict"])
    assert result.dropped_sections == {"optimizer": 21}
    assert json.loads(to_json(result))["outputs"][0]["size"] == dest.stat().st_size


def test_keep_training_writes_every_section(files, tmp_path):
    dest = tmp_path / "all.safetensors"
    convert(files["training"], dest, options=ConvertOptions(keep_training=True))
    loaded = load_output(dest, "safetensors")
    source = torch.load(files["training"], weights_only=False)
    same_bits(loaded["optimizer_state_dict.state.0.exp_avg"],
              source["optimizer_state_dict"]["state"][0]["exp_avg"])
    assert "conv.weight" in loaded and "model_state_dict.conv.weight" not in loaded  # weights keep names


def test_section_pick_writes_the_ema_weights(files, tmp_path):
    dest = tmp_path / "ema.safetensors"
    convert(files["ema"], dest, options=ConvertOptions(section="ema"))
    ema = torch.load(files["ema"], weights_only=True)["ema"]
    loaded = load_output(dest, "safetensors")
    for name, tensor in ema.items():
        same_bits(loaded[name], tensor, name)
    with pytest.raises(CheckpointError, match="no section named 'nope'.*model, ema"):
        convert(files["ema"], tmp_path / "x.safetensors", options=ConvertOptions(section="nope"))


def test_rename_add_prefix_keep_and_drop(files, tmp_path):
    dest = tmp_path / "renamed.safetensors"
    options = ConvertOptions(strip_prefix=("module.",), add_prefix="net.",
                             rename=(r"^net\.bn\.=>net.norm.",), drop=("*.num_batches_tracked",),
                             keep=("module.bn.*", "module.conv.*"))
    result = convert(files["data_parallel"], dest, options=options)
    assert set(load_file(dest)) == {"net.norm.weight", "net.norm.bias", "net.norm.running_mean",
                                    "net.norm.running_var", "net.conv.weight", "net.conv.bias"}
    assert "module.bn.num_batches_tracked" in result.dropped
    assert "module.fc.weight" in result.dropped


def test_rules_that_change_nothing_are_noted(files, tmp_path):
    """A prefix that starts no name, a rename rule or a drop rule that matches nothing: the
    conversion goes ahead (the user may mean it) but says so instead of staying silent."""
    options = ConvertOptions(strip_prefix=("model.", "module."), rename=("^nothing=>x",),
                             drop=("*.no_such_tensor",))
    result = convert(files["data_parallel"], tmp_path / "x.safetensors", options=options)
    assert result.renamed and all(not new.startswith("module.") for new in result.renamed.values())
    assert result.notes == [
        "The prefix 'model.' to strip starts no tensor name (names start like "
        f"'{next(iter(result.renamed))}'); no name was changed by it.",
        "The rename rule '^nothing=>x' changed no tensor name.",
        "The drop rule '*.no_such_tensor' matched no tensor name; nothing was left out by it."]
    quiet = convert(files["data_parallel"], tmp_path / "y.safetensors",
                    options=ConvertOptions(strip_prefix=("module.",)))
    assert quiet.notes == []


def test_rename_collision_is_refused_and_nothing_written(files, tmp_path):
    options = ConvertOptions(rename=(r"^(conv|fc)\.=>layer.",))
    with pytest.raises(CheckpointError, match="same name 'layer.weight'"):
        convert(files["state_dict"], tmp_path / "x.safetensors", options=options)
    with pytest.raises(CheckpointError, match="pattern=>replacement"):
        convert(files["state_dict"], tmp_path / "x.safetensors",
                options=ConvertOptions(rename=("no-arrow",)))
    assert list(tmp_path.iterdir()) == []


def test_dropping_everything_is_a_clear_error(files, tmp_path):
    with pytest.raises(CheckpointError, match="removed every tensor"):
        convert(files["state_dict"], tmp_path / "x.safetensors", options=ConvertOptions(drop=("*",)))


def test_safetensors_metadata_is_carried_over(files, tmp_path):
    dest = tmp_path / "again.safetensors"
    convert(files["safetensors"], dest)
    with safe_open(dest, framework="pt") as f:
        meta = f.metadata()
    assert meta["epoch"] == "3" and meta["format"] == "pt"
    assert json.loads(meta["checkpoint_studio"])["source_format"] == "safetensors"


def test_sharded_output_follows_the_hugging_face_layout(files, tmp_path):
    dest = tmp_path / "sharded"
    result = convert(files["state_dict"], dest, "safetensors-sharded", max_shard_size=400)
    index = json.loads((dest / INDEX_NAME).read_text())
    shards = sorted(p.name for p in dest.glob("*.safetensors"))
    n = len(shards)
    assert n > 2 and shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == result.bytes_written
    assert "head.weight" not in index["weight_map"]  # tied: listed in the aliases instead
    assert json.loads(index["metadata"][ALIASES_KEY]) == {"head.weight": "embed.weight"}
    for shard in shards:  # every shard is a complete file the library opens on its own
        assert load_file(dest / shard)
    assert [o["path"] for o in result.outputs][-1].endswith(INDEX_NAME)


def test_tensor_larger_than_the_shard_size_gets_its_own_shard(files, tmp_path):
    dest = tmp_path / "sharded"
    result = convert(files["state_dict"], dest, "safetensors-sharded", max_shard_size=100)
    index = json.loads((dest / INDEX_NAME).read_text())
    conv_shard = index["weight_map"]["conv.weight"]  # 432 bytes > 100
    assert [k for k, v in index["weight_map"].items() if v == conv_shard] == ["conv.weight"]
    assert any("larger than the maximum shard size" in n for n in result.notes)
    # and the sharded output converts back to one file, bit for bit
    convert(dest / INDEX_NAME, tmp_path / "one.safetensors")
    for name, tensor in torch.load(files["state_dict"], weights_only=True).items():
        same_bits(load_output(tmp_path / "one.safetensors", "safetensors")[name], tensor, name)


def test_default_destination_names():
    assert default_destination("/a/model.ckpt", "safetensors") == Path("/a/model.safetensors")
    assert default_destination("/a/x.pt", "pt", "/out") == Path("/out/x.pt")
    assert default_destination("/a/model.safetensors.index.json", "safetensors-sharded",
                               "/o") == Path("/o/model")


def test_parse_size():
    from core.convert.safetensors_sharded import parse_size

    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size("1000B") == 1000
    assert parse_size(" 1.5 gb ") == 15 * 10**8
    for bad in ("", "two GB", "5XB", "0B", "0.1B"):
        with pytest.raises(CheckpointError, match="is not a size"):
            parse_size(bad)
    for bare in ("2", "1000", "0.5"):
        with pytest.raises(CheckpointError, match="has no unit"):
            parse_size(bare)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("dtype", [None, "bf16"])
@pytest.mark.parametrize("key", ["dtypes", "state_dict", "safetensors", "sharded_index"])
def test_many_small_chunks_give_the_same_bytes(files, tmp_path, monkeypatch, target, dtype, key):
    """Tiny chunk/buffer sizes so every streaming loop runs many times on the tiny fixtures."""
    from core.convert import hashing, stream

    monkeypatch.setattr(stream, "CHUNK", 24)
    monkeypatch.setattr(hashing, "BUFFER", 100)
    dest = tmp_path / ("out" if target == "safetensors-sharded" else f"out.{target}")
    convert(files[key], dest, target, ConvertOptions(dtype=dtype), max_shard_size=700)
    loaded = load_output(dest, target)
    for name, tensor in expected_tensors(files, key).items():
        cast = dtype and tensor.dtype in (torch.float32, torch.float16, torch.float64)
        same_bits(loaded[name], tensor.to(torch.bfloat16) if cast else tensor, name)

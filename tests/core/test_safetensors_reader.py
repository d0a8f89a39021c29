"""The hand-written safetensors readers (single file and sharded) against the real library."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import open_checkpoint, safetensors, safetensors_index
from core.tensor_io import read_tensor

ROOT = Path(__file__).resolve().parents[2]


def same_bits(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.dtype == theirs.dtype
    assert tuple(ours.shape) == tuple(theirs.shape)
    a = ours.contiguous().reshape(-1).view(torch.uint8)
    b = theirs.contiguous().reshape(-1).view(torch.uint8)
    assert torch.equal(a, b)


@pytest.mark.parametrize("key", ["safetensors", "dtypes_safetensors"])
def test_every_tensor_matches_the_library(files, key):
    ckpt = open_checkpoint(files[key])
    expected = load_file(files[key])
    assert ckpt.format == "safetensors"
    assert ckpt.weights == "model"
    assert set(ckpt.sections["model"].tensors) == set(expected)
    for name, tensor in expected.items():
        info = ckpt.find(name)
        assert info.storage.path == files[key]
        same_bits(read_tensor(info), tensor)


def test_metadata_is_the_files_metadata(files):
    ckpt = open_checkpoint(files["safetensors"])
    assert ckpt.metadata == {"format": "pt", "epoch": "3"}
    assert ckpt.findings == []


def test_opening_needs_no_torch(files):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from core.formats import safetensors, safetensors_index, onnx\n"
        f"c = safetensors.open({str(files['safetensors'])!r})\n"
        f"s = safetensors_index.open({str(files['sharded_index'])!r})\n"
        f"o = onnx.open({str(files['onnx'])!r})\n"
        "print(len(c.all_tensors()), len(s.all_tensors()), len(o.sections['model'].tensors))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10", "10", "5"]


# ---- damaged single files -------------------------------------------------------------------

A = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
B = {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}


def write_st(path: Path, header: dict | bytes, data: bytes, length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _dup() -> bytes:
    return b'{"a":' + json.dumps(A).encode() + b',"a":' + json.dumps(A).encode() + b"}"


BAD = {
    "header past EOF": ({"a": A, "b": B}, bytes(16), 10_000, "longer than the file"),
    "header over 100 MB": ({"a": A, "b": B}, bytes(16), 200_000_000, "100 MB"),
    "overlap": ({"a": A, "b": {**B, "data_offsets": [4, 12]}}, bytes(12), None, "overlaps"),
    "gap": ({"a": A, "b": {**B, "data_offsets": [12, 20]}}, bytes(20), None, "gap"),
    "trailing bytes": ({"a": A, "b": B}, bytes(18), None, "extra bytes"),
    "ends past EOF": ({"a": A, "b": B}, bytes(12), None, "ends past the end of the file"),
    "size mismatch": ({"a": {**A, "shape": [3]}, "b": B}, bytes(16), None, "number of bytes"),
    "unknown dtype": ({"a": {**A, "dtype": "F7"}, "b": B}, bytes(16), None, "data type"),
    "negative shape": ({"a": {**A, "shape": [-2]}, "b": B}, bytes(16), None, "invalid shape"),
    "float shape": ({"a": {**A, "shape": [2.0]}, "b": B}, bytes(16), None, "invalid shape"),
    "bool shape": ({"a": {**A, "shape": [True, 2]}, "b": B}, bytes(16), None, "invalid shape"),
    "bad offsets": ({"a": {**A, "data_offsets": [0]}, "b": B}, bytes(16), None, "position"),
    "missing field": ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), None, "incomplete"),
    "duplicate keys": (_dup(), bytes(8), None, "twice"),
    "not UTF-8": (b'{"\xff": {}}', b"", None, "not valid text"),
    "not JSON": (b'{"a": [1, 2', b"", None, "not valid JSON"),
    "metadata not text": ({"__metadata__": {"epoch": 3}}, b"", None, "metadata entry 'epoch'"),
    "metadata not object": ({"__metadata__": ["x"]}, b"", None, "metadata"),
    "NaN in header": (b'{"__metadata__": {"a": "b"}, "x": NaN}', b"", None, "not valid JSON"),
    "lone surrogate": (b'{"\\ud800": {}}', b"", None, "not valid text"),
}
LIBRARY_ACCEPTS = {"duplicate keys"}  # Rust keeps the last duplicate; we refuse, as DESIGN asks


@pytest.mark.parametrize("case", sorted(BAD))
def test_damaged_file_is_refused_with_a_plain_sentence(tmp_path, case):
    header, data, length, words = BAD[case]
    path = write_st(tmp_path / "bad.safetensors", header, data, length)
    with pytest.raises(CorruptFile) as err:
        safetensors.open(path)  # the reader itself: no stray exception wrapped by the registry
    with pytest.raises(CorruptFile):
        open_checkpoint(path)
    assert err.value.message.startswith("This safetensors file is damaged: ")
    assert words in err.value.message
    assert err.value.details
    if case not in LIBRARY_ACCEPTS:
        with pytest.raises(SafetensorError), safe_open(path, "pt"):
            pass


def test_a_valid_handmade_file_opens(tmp_path):
    path = write_st(tmp_path / "ok.safetensors", {"b": B, "a": A, "__metadata__": None},
                    struct.pack("<2fq", 1.5, -2.0, 7))
    ckpt = open_checkpoint(path)
    assert read_tensor(ckpt.find("a")).tolist() == [1.5, -2.0]
    assert read_tensor(ckpt.find("b")).tolist() == [7]
    assert ckpt.metadata == {}


def test_truncated_file_is_refused_at_every_cut(files, tmp_path):
    data = files["safetensors"].read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for cut in sorted({1, 7, 8, 9, 20, header_end - 1, header_end, header_end + 1,
                       len(data) - 4, len(data) - 1}):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            open_checkpoint(path)
        if safetensors.sniff(path, data[:cut]):
            with pytest.raises(CorruptFile):
                safetensors.open(path)


def test_random_damage_never_escapes_as_a_raw_exception(files, tmp_path):
    import random

    data = files["dtypes_safetensors"].read_bytes()
    rng = random.Random(0)
    path = tmp_path / "fuzz.safetensors"
    read = 0
    for _ in range(200):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        path.write_bytes(bytes(buf))
        if not safetensors.sniff(path, bytes(buf[:4096])):
            continue
        read += 1
        # the reader itself, not the registry (which would wrap a stray exception): anything but
        # a CheckpointError fails the test
        with contextlib.suppress(CheckpointError):
            safetensors.open(path)
    assert read >= 100, read  # most damaged copies still look like safetensors and reach the reader


# ---- sniffing -------------------------------------------------------------------------------

def test_sniff_claims_only_its_own_files(files):
    for key, path in files.paths.items():
        head = path.read_bytes()[:4096]
        assert safetensors.sniff(path, head) == key.endswith("safetensors"), key
        assert safetensors_index.sniff(path, head) == (key == "sharded_index"), key


# ---- sharded ----------------------------------------------------------------------------------

def test_sharded_matches_the_library_shard_by_shard(files):
    index_path = files["sharded_index"]
    ckpt = open_checkpoint(index_path)
    weight_map = json.loads(index_path.read_text())["weight_map"]
    assert ckpt.format == "safetensors-sharded"
    assert ckpt.weights == "model"
    assert set(ckpt.sections["model"].tensors) == set(weight_map)
    assert ckpt.metadata["shards"] == sorted(set(weight_map.values()))
    assert ckpt.metadata["total_size"] == 1000
    for shard in set(weight_map.values()):
        for name, tensor in load_file(index_path.parent / shard).items():
            info = ckpt.find(name)
            assert info.storage.path.name == shard
            same_bits(read_tensor(info), tensor)


@pytest.fixture()
def shard_copy(files, tmp_path) -> Path:
    folder = tmp_path / "shards"
    shutil.copytree(files["sharded_index"].parent, folder)
    return folder / "model.safetensors.index.json"


def _edit_map(index: Path, edit) -> None:
    data = json.loads(index.read_text())
    edit(data["weight_map"])
    index.write_text(json.dumps(data))


def test_missing_shard_is_named(shard_copy):
    (shard_copy.parent / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        safetensors_index.open(shard_copy)
    assert "model-00002-of-00002.safetensors" in err.value.message


@pytest.mark.parametrize("shard", ["../x.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_shard_outside_the_folder_is_refused(shard_copy, shard):
    (shard_copy.parent.parent / "x.safetensors").write_bytes(
        shard_copy.parent.joinpath("model-00001-of-00002.safetensors").read_bytes())
    _edit_map(shard_copy, lambda m: m.update({"fc.bias": shard}))
    with pytest.raises(UnsafeContent) as err:
        safetensors_index.open(shard_copy)
    assert shard in err.value.message


def test_shard_symlink_leaving_the_folder_is_refused(shard_copy, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shard = shard_copy.parent / "model-00002-of-00002.safetensors"
    shard.rename(outside)
    os.symlink(outside, shard)
    with pytest.raises(UnsafeContent):
        safetensors_index.open(shard_copy)


def test_hugging_face_cache_layout_opens(files, tmp_path):
    """snapshots/<rev>/* are links into blobs/: the shards sit next to the index they link to."""
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "rev"
    blobs.mkdir()
    snap.mkdir(parents=True)
    for i, src in enumerate(sorted(files["sharded_index"].parent.iterdir())):
        shutil.copy(src, blobs / f"blob{i}")
        os.symlink(os.path.relpath(blobs / f"blob{i}", snap), snap / src.name)
    ckpt = open_checkpoint(snap / "model.safetensors.index.json")
    assert len(ckpt.all_tensors()) == 10


def test_key_missing_from_its_shard_is_refused(shard_copy):
    _edit_map(shard_copy, lambda m: m.update({"ghost.weight": "model-00001-of-00002.safetensors"}))
    with pytest.raises(CorruptFile) as err:
        safetensors_index.open(shard_copy)
    assert "ghost.weight" in err.value.message


def test_key_not_in_the_map_is_kept_with_a_finding(shard_copy):
    _edit_map(shard_copy, lambda m: m.pop("fc.bias"))
    ckpt = safetensors_index.open(shard_copy)
    assert "fc.bias" in ckpt.sections["model"].tensors
    [finding] = ckpt.findings
    assert (finding.kind, finding.name, finding.severity) == ("structure", "fc.bias", "info")


def test_damaged_shard_is_refused(shard_copy):
    shard = shard_copy.parent / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(CorruptFile):
        safetensors_index.open(shard_copy)


@pytest.mark.parametrize("text", ['{"weight_map": {"a": ', '{"weight_map": ["a"]}',
                                  '{"weight_map": {"a": 3}}', '{"weight_map": {}}'])
def test_damaged_index_is_refused(tmp_path, text):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(text)
    with pytest.raises(CorruptFile):
        safetensors_index.open(index)
    with pytest.raises(CorruptFile):
        open_checkpoint(index)

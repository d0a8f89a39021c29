"""Corrupt and lying files: every format cut at every 1 %, zip archives whose directory lies,
tensors that claim far more data than the file holds, safetensors headers the reader tests do not
cover yet, and ONNX external data escaping its folder (checked through the registry).

The promise: a CheckpointError subclass with a plain sentence (never another exception, never a
hang), no allocation anywhere near what the file claims, nothing written; and where torch itself
can load a damaged zip, we read exactly the tensors torch reads (a parser gap is a bypass).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from core.convert import convert
from core.errors import CheckpointError, UnsafeContent
from core.formats import open_checkpoint
from core.model import Checkpoint
from core.tensor_io import read_tensor
from tests.fixtures.models import FixtureFiles
from tests.security import zipbytes as zb

SECONDS = 5.0
# name -> (fixture, the file in its folder that gets cut; None = the fixture itself)
CUT_TARGETS: dict[str, tuple[str, str | None]] = {
    "torch_zip": ("state_dict", None),
    "torch_zip_training": ("training", None),
    "torch_legacy": ("legacy", None),
    "torch_legacy_dtypes": ("dtypes_legacy", None),
    "safetensors": ("safetensors", None),
    "safetensors_index": ("sharded_index", None),
    "safetensors_shard": ("sharded_index", "model-00001-of-00002.safetensors"),
    "torchscript": ("torchscript", None),
    "pt2": ("pt2", None),
    "onnx": ("onnx", None),
    "onnx_external_data": ("onnx_external", "weights.bin"),
}
# protobuf has no end marker: a cut between two top-level fields is a smaller valid model
MAY_STILL_OPEN = {"onnx"}


@contextlib.contextmanager
def bounded(what: str, max_bytes: int) -> Iterator[None]:
    """Fails when the block takes more than SECONDS or Python allocates more than max_bytes."""
    tracemalloc.start()
    start = time.process_time()  # CPU time: a hang burns it, other processes' load does not
    try:
        yield
    finally:
        seconds = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < SECONDS, f"{what}: {seconds:.1f} s"
    assert peak < max_bytes, f"{what}: allocated {peak} bytes"


def private_copy(files: FixtureFiles, tmp: Path, fixture: str, victim: str | None
                 ) -> tuple[Path, Path]:
    """(file to open, file to damage), copied so the session fixtures stay intact."""
    src = files[fixture]
    if fixture in ("sharded_index", "onnx_external"):
        shutil.copytree(src.parent, tmp / "copy")
        target = tmp / "copy" / src.name
        return target, target.parent / (victim or src.name)
    shutil.copy(src, tmp / src.name)
    return tmp / src.name, tmp / src.name


def open_expecting_error(path: Path, may_open: bool = False) -> Checkpoint | None:
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        assert exc.message.strip().endswith((".", ")")), exc.message
        return None
    assert may_open, f"{path.name} opened"
    for info in ckpt.all_tensors():  # a smaller valid file: its tensors read or fail plainly
        with contextlib.suppress(CheckpointError):
            read_tensor(info)
    return ckpt


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(CUT_TARGETS))
def test_cut_at_every_percent(files: FixtureFiles, tmp_path: Path, name: str) -> None:
    target, victim = private_copy(files, tmp_path, *CUT_TARGETS[name])
    data = victim.read_bytes()
    before = listing(tmp_path)
    for percent in range(100):
        victim.write_bytes(data[:len(data) * percent // 100])
        with bounded(f"{name} cut at {percent}%", 4 << 20):
            open_expecting_error(target, name in MAY_STILL_OPEN)
    assert listing(tmp_path) == before


# ---- zip archives whose directory lies ---------------------------------------------------------
def _shift_cd(raw: bytearray, by: int) -> bytearray:
    return zb.put(raw, zb.eocd_at(raw) + 16, "<I", zb.cd_offset(raw) + by)


def _entry_sizes(suffix: str, delta: int) -> Callable[[bytearray], bytearray]:
    def patch(raw: bytearray) -> bytearray:
        e = zb.entry(raw, suffix)
        size = struct.unpack_from("<I", raw, e.sizes_at)[0]
        return zb.put(raw, e.sizes_at, "<II", size + delta, size + delta)
    return patch


def _entry_local(suffix: str, other: str) -> Callable[[bytearray], bytearray]:
    def patch(raw: bytearray) -> bytearray:
        return zb.put(raw, zb.entry(raw, suffix).local_field_at, "<I", zb.entry(raw, other).local)
    return patch


def _entry_count(count: int) -> Callable[[bytearray], bytearray]:
    return lambda raw: zb.put(raw, zb.eocd_at(raw) + 8, "<HH", count, count)


def _local_name(raw: bytearray) -> bytearray:
    local = zb.entry(raw, "/data.pkl").local
    name_at = local + 30 + len("archive/")
    raw[name_at:name_at + 4] = b"dXta"  # the central directory still says data.pkl
    return raw


def _other_state_pickle() -> bytes:
    """A state dict of one tensor named "hidden" on storage 0 (80 floats, the size of the
    fixture's data/0 record, which torch requires)."""
    buf = io.BytesIO()
    torch.save({"hidden": torch.zeros(80)}, buf)
    with zipfile.ZipFile(buf) as zf:
        return zf.read("archive/data.pkl")


def _second_directory(raw: bytearray) -> bytearray:
    return zb.second_directory(raw, "/data.pkl", _other_state_pickle())


def _prepend_local(raw: bytearray) -> bytearray:
    """A stray local header in front: torch starts at byte 0, zipfile at the directory."""
    return bytearray(zb.LOCAL + b"\0" * 26) + raw


ZIP_LIES: dict[str, Callable[[bytearray], bytearray]] = {
    "directory offset past the end": lambda raw: _shift_cd(raw, len(raw)),
    "directory offset inside an entry": lambda raw: _shift_cd(raw, 46),
    "directory offset too early": lambda raw: _shift_cd(raw, -100),
    "pickle entry claims more bytes": _entry_sizes("/data.pkl", 100),
    "pickle entry claims fewer bytes": _entry_sizes("/data.pkl", -10),
    "storage entry claims a huge size": _entry_sizes("/data/0", 1 << 31),
    "pickle entry points at a storage": _entry_local("/data.pkl", "/data/0"),
    "storage entry points at the pickle": _entry_local("/data/0", "/data.pkl"),
    "entry count too small": _entry_count(3),
    "entry count too large": _entry_count(500),
    "local name differs from the directory": _local_name,
    "second directory in the comment": _second_directory,
    "stray local header in front": _prepend_local,
    "entry needs zip version 24.9": lambda raw: zb.put(raw, zb.entry(raw, "/data.pkl").at + 6,
                                                       "<H", 249),  # zipfile: NotImplementedError
}


def torch_reads(path: Path) -> dict[str, torch.Tensor] | None:
    """What torch.load(weights_only=True) makes of the file (None: it refuses it)."""
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # any refusal by torch
        return None
    return loaded if isinstance(loaded, dict) else None


def same_as_torch(ckpt: Checkpoint, expected: dict[str, torch.Tensor]) -> None:
    tensors = ckpt.sections[ckpt.weights].tensors if ckpt.weights else {}
    assert set(tensors) == set(expected)
    for name, ref in expected.items():
        got = read_tensor(tensors[name])
        assert torch.equal(got.reshape(-1).view(torch.uint8), ref.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("lie", sorted(ZIP_LIES))
def test_lying_zip_directory(files: FixtureFiles, tmp_path: Path, lie: str) -> None:
    path = tmp_path / "lie.pt"
    path.write_bytes(ZIP_LIES[lie](zb.plain_zip(files["state_dict"])))
    with bounded(lie, 4 << 20):
        try:
            ckpt: Checkpoint | None = open_checkpoint(path)
        except CheckpointError as exc:
            assert exc.message.endswith("."), exc.message
            ckpt = None
    theirs = torch_reads(path)
    if ckpt is not None:
        assert theirs is not None, "we opened a file torch refuses"
        same_as_torch(ckpt, theirs)
    assert listing(tmp_path) == ["lie.pt"]


def test_plain_zip_control(files: FixtureFiles, tmp_path: Path) -> None:
    """The rewritten archive the lies start from opens like torch reads it."""
    path = tmp_path / "plain.pt"
    path.write_bytes(zb.plain_zip(files["state_dict"]))
    same_as_torch(open_checkpoint(path), torch_reads(path) or {})


# ---- claims far larger than the file ------------------------------------------------------------
def _pickle_claiming(numel: int, legacy: bool = False) -> bytes:
    """{"w": tensor of `numel` floats on storage "0"}, as torch pickles it (legacy: with the
    storage id's view field)."""
    count = b"\x8a\x08" + numel.to_bytes(8, "little", signed=True)
    pid = (b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
           + count + (b"N" if legacy else b"") + b"tQ")
    return (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"K\x00"
            + count + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")


def _zip_claim(files: FixtureFiles, deflate_bomb: bool) -> bytes:
    """A torch zip whose one tensor claims 2**31 floats (8 GiB); its storage record is small.
    With `deflate_bomb`, the record is deflated and its directory also claims 8 GiB."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if deflate_bomb else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", _pickle_claiming(1 << 31))
        zf.writestr("archive/data/0", b"\0" * 4096, compress_type=method)
        zf.writestr("archive/version", b"3\n")
    raw = bytearray(out.getvalue())
    if deflate_bomb:
        zb.put(raw, zb.entry(raw, "/data/0").sizes_at + 4, "<I", (1 << 32) - 4096)
    return bytes(raw)


def _legacy_claim(_: FixtureFiles) -> bytes:
    """A legacy file whose storage claims 2**40 floats; 4 KiB of data follow."""
    import pickle

    from core.formats.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION

    head = b"".join(pickle.dumps(v, protocol=2)
                    for v in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}))
    keys = pickle.dumps(["0"], protocol=2)
    return (head + _pickle_claiming(1 << 40, legacy=True) + keys + (1 << 40).to_bytes(8, "little")
            + b"\0" * 4096)


CLAIMS: dict[str, Callable[[FixtureFiles], bytes]] = {
    "zip storage": lambda f: _zip_claim(f, False),
    "zip deflated storage with a lying size": lambda f: _zip_claim(f, True),
    "legacy storage": _legacy_claim,
}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_size_claims_never_allocate(files: FixtureFiles, tmp_path: Path, claim: str) -> None:
    """Opening, reading and converting a tensor that claims gigabytes the file does not hold
    fails plainly, with Python allocating a few MB at most, and writes nothing."""
    path = tmp_path / "claim.pt"
    path.write_bytes(CLAIMS[claim](files))
    with bounded(claim, 16 << 20), pytest.raises(CheckpointError):
        ckpt = open_checkpoint(path)
        for info in ckpt.all_tensors():
            read_tensor(info)
    with bounded(f"convert {claim}", 16 << 20), pytest.raises(CheckpointError):
        convert(path, tmp_path / "out.safetensors")
    assert listing(tmp_path) == ["claim.pt"]


# ---- safetensors headers not covered by tests/core/test_safetensors_reader.py -------------------
def _st(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


A = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
ST_LIES = {
    "huge shape": _st({"a": {**A, "shape": [1 << 40, 1 << 20]}}, bytes(8)),
    "shape product overflows 64 bits": _st({"a": {**A, "shape": [1 << 63, 1 << 63, 4]}}, bytes(8)),
    "offsets near 2**64": _st({"a": {**A, "data_offsets": [(1 << 64) - 8, (1 << 64) - 1]}}, bytes(8)),
    "offsets above 2**64": _st({"a": {**A, "data_offsets": [0, 1 << 70]}}, bytes(8)),
    "header length 2**63": _st({"a": A}, bytes(8), 1 << 63),
    "deeply nested header": _st(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "deeply nested metadata": _st(b'{"__metadata__": {"k": ' + b"[" * 50_000 + b"]" * 50_000
                                  + b"}}"),
    "header is a list": _st(b"[1, 2]      "),
    "tensor named __metadata__ twice": _st(b'{"__metadata__": {}, "__metadata__": {}}'),
}


@pytest.mark.parametrize("lie", sorted(ST_LIES))
def test_lying_safetensors_header(tmp_path: Path, lie: str) -> None:
    path = tmp_path / "lie.safetensors"
    path.write_bytes(ST_LIES[lie])
    with bounded(lie, 8 << 20), pytest.raises(CheckpointError) as err:
        open_checkpoint(path)
    assert err.value.message.endswith(".")
    assert listing(tmp_path) == ["lie.safetensors"]


# ---- ONNX external data, through the registry (the reader tests call the reader directly) -------
ESCAPES = ["../secret.bin", "..\\secret.bin", "sub/./../../secret.bin", "./../secret.bin",
           "C:\\secret.bin", "C:/secret.bin", "\\\\server\\share\\secret.bin"]


def _external_model(folder: Path, location: str) -> Path:
    import numpy as np
    from onnx import TensorProto, helper

    folder.mkdir(exist_ok=True)
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [2], np.zeros(2, "<f4").tobytes(),
                                raw=True)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", 1, [2])], [tensor])
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("location", ESCAPES)
def test_onnx_external_data_cannot_leave_the_folder(tmp_path: Path, location: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\1" * 8)
    path = _external_model(tmp_path / "m", location)
    with pytest.raises(UnsafeContent) as err:
        open_checkpoint(path)
    assert location in err.value.message
    assert sorted(os.listdir(tmp_path / "m")) == ["model.onnx"]

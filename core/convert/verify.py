"""Re-open a written file with the real library and compare every tensor to what was streamed.

The per-tensor checksum is CRC-32 (zlib): computed over the bytes as they are written (for tensors
the kernel copies verbatim, over the source bytes by the source hasher's pass, see hashing.py),
and again over the bytes read back. It catches torn/misplaced writes and our own bugs at 1.5-3
GB/s, where sha256 would double the time of a conversion (the source file as a whole is
identified by its sha256 in the metadata). safetensors output is opened with
`safetensors.safe_open` (names, shapes, dtypes, metadata; the Rust loader validates the layout)
and its bytes are read by offset through a memory map, so verifying needs no torch; `.pt` output
is opened with `torch.load(weights_only=True, mmap=True)`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.convert.stream import Meter, mapped, tensor_bytes
from core.dtypes import SAFETENSORS
from core.errors import CheckpointError

METHOD = "crc32"


@dataclass(frozen=True)
class Written:
    """What was written for one tensor: checked against the file read back."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    crc: int | None  # None: copied verbatim; the source hasher has its checksum


def checksum(data: Any, crc: int = 0) -> int:
    return zlib.crc32(data, crc)


def mismatch(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"Checking the written file failed: {what}. Nothing was saved.",
                           f"{path}")


def verify_safetensors(path: Path, expected: list[Written], metadata: dict[str, str],
                       meter: Meter, source_crcs: Callable[[], dict[str, int]] = dict) -> None:
    """Library check of names/shapes/dtypes/metadata, then every tensor's bytes by checksum.

    `source_crcs` gives the checksums of the tensors written with `crc=None` (it may wait for
    the source hasher, so it is called after the output was read back).
    """
    from safetensors import safe_open

    from core.formats.safetensors import read_header

    want = {w.name: w for w in expected}
    try:
        with safe_open(str(path), framework="numpy") as f:
            names, found_meta = set(f.keys()), f.metadata() or {}
            shapes = {n: (tuple(f.get_slice(n).get_shape()), f.get_slice(n).get_dtype())
                      for n in names}
    except Exception as exc:  # SafetensorError and friends: the library refused our file
        raise mismatch(path, "the safetensors library cannot open it") from exc
    if names != set(want):
        raise mismatch(path, f"it holds {len(names)} tensors instead of {len(want)}")
    if found_meta != metadata:
        raise mismatch(path, "its metadata differs from what was written")
    for name, (shape, code) in shapes.items():
        if shape != want[name].shape or SAFETENSORS.get(code) != want[name].dtype:
            raise mismatch(path, f"tensor '{name}' has the wrong shape or type")
    tensors, _ = read_header(path)
    found = {}
    for w in expected:
        storage = tensors[w.name].storage
        if storage is None or storage.nbytes != w.nbytes:
            raise mismatch(path, f"tensor '{w.name}' has the wrong size")
        found[w.name] = 0
        for part in mapped(path, storage.offset, storage.nbytes):
            found[w.name] = checksum(part, found[w.name])
            meter.add(len(part), f"verifying {w.name}")
        if not storage.nbytes:
            meter.add(0, f"verifying {w.name}")
    deferred = source_crcs() if any(w.crc is None for w in expected) else {}
    for w in expected:
        if found[w.name] != (w.crc if w.crc is not None else deferred.get(w.name)):
            raise mismatch(path, f"the bytes of tensor '{w.name}' differ from the source")


def verify_metadata(path: Path, metadata: dict[str, str]) -> None:
    """After the header was patched: the library still opens the file and reads `metadata`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            found = f.metadata() or {}
    except Exception as exc:  # SafetensorError: the library refused our file
        raise mismatch(path, "the safetensors library cannot open it") from exc
    if found != metadata:
        raise mismatch(path, "its metadata differs from what was written")


def verify_torch(path: Path, expected: list[Written], aliases: dict[str, str],
                 meter: Meter) -> None:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # UnpicklingError, RuntimeError: torch refused our file
        raise mismatch(path, "torch.load(weights_only=True) cannot open it") from exc
    if not isinstance(loaded, dict) or set(loaded) != {w.name for w in expected} | set(aliases):
        raise mismatch(path, "it does not hold exactly the tensors that were written")
    for w in expected:
        tensor = loaded[w.name]
        if str(tensor.dtype).removeprefix("torch.") != w.dtype or tuple(tensor.shape) != w.shape:
            raise mismatch(path, f"tensor '{w.name}' has the wrong shape or type")
        if checksum(tensor_bytes(tensor)) != w.crc:
            raise mismatch(path, f"the bytes of tensor '{w.name}' differ from the source")
        meter.add(w.nbytes, f"verifying {w.name}")
    for alias, target in aliases.items():
        a, b = loaded[alias], loaded[target]
        if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr() or a.shape != b.shape:
            raise mismatch(path, f"'{alias}' is no longer tied to '{target}'")

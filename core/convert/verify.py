"""Re-open a written file with the real library and compare every tensor to what was streamed.

The per-tensor checksum (checksums.py) is computed over the bytes as they are written (for
tensors the kernel copies verbatim, over the source bytes by the source hasher's pass, see
hashing.py), and again over the bytes read back from the written file.

safetensors output is checked in two steps: `read_back` checksums every tensor's bytes through
a memory map at the offsets they were written to (while the source hash may still be running),
then, once the header is final, `verify_header` opens the file with `safetensors.safe_open`
(names, shapes, dtypes, metadata; the Rust loader validates the layout) and checks that the
header places every tensor at exactly the bytes that were read back. Verifying needs no torch.
`.pt` output is opened with `torch.load(weights_only=True, mmap=True)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.convert.checksums import checksum, new_checksum
from core.convert.stream import Meter, mapped, tensor_bytes
from core.dtypes import SAFETENSORS
from core.errors import CheckpointError


@dataclass(frozen=True)
class Written:
    """What was written for one tensor: checked against the file read back."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    digest: int | None  # None: copied verbatim; the source hasher has its checksum
    offset: int = 0  # where its bytes start in the written file (safetensors)


def mismatch(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"Checking the written file failed: {what}. Nothing was saved.",
                           f"{path}")


def read_back(path: Path, expected: list[Written], meter: Meter) -> dict[str, int]:
    """The checksum of every tensor's bytes as they are in the file now (page cache)."""
    found = {}
    for w in expected:
        digest = new_checksum()
        for part in mapped(path, w.offset, w.nbytes):
            digest.update(part)
            meter.add(len(part), f"verifying {w.name}")
        if not w.nbytes:
            meter.add(0, f"verifying {w.name}")
        found[w.name] = digest.intdigest()
    return found


def compare(path: Path, expected: list[Written], found: dict[str, int],
            source_digests: dict[str, int]) -> None:
    """Every tensor's bytes read back equal what was written (verbatim ones: the source's)."""
    for w in expected:
        want = w.digest if w.digest is not None else source_digests.get(w.name)
        if found.get(w.name) != want:
            raise mismatch(path, f"the bytes of tensor '{w.name}' differ from the source")


def verify_header(path: Path, expected: list[Written], metadata: dict[str, str]) -> None:
    """The library opens the file and finds exactly these tensors, shapes, dtypes and metadata,
    and the header places every tensor at the offsets `read_back` checked."""
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
    for w in expected:
        storage = tensors[w.name].storage
        if storage is None or (storage.offset, storage.nbytes) != (w.offset, w.nbytes):
            raise mismatch(path, f"tensor '{w.name}' is not where it was written")


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
        if checksum(tensor_bytes(tensor)) != w.digest:
            raise mismatch(path, f"the bytes of tensor '{w.name}' differ from the source")
        meter.add(w.nbytes, f"verifying {w.name}")
    for alias, target in aliases.items():
        a, b = loaded[alias], loaded[target]
        if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr() or a.shape != b.shape:
            raise mismatch(path, f"'{alias}' is no longer tied to '{target}'")

"""Reading one tensor lazily from where its TensorInfo says its bytes live (imports torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.dtypes import itemsize
from core.errors import CheckpointError, CorruptFile
from core.model import Storage, TensorInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch

# encoding name -> function returning the storage's bytes; readers register non-raw encodings here
DECODERS: dict[str, Callable[[Storage], bytes | bytearray | memoryview]] = {}


def storage_bytes(storage: Storage) -> bytearray:
    """A private, writable copy of one storage's bytes."""
    if storage.encoding != "raw":
        decode = DECODERS.get(storage.encoding)
        if decode is None:
            raise CheckpointError(f"Reading tensors stored as '{storage.encoding}' is not supported.")
        return bytearray(decode(storage))
    return read_range(storage.path, storage.offset, storage.nbytes)


def read_range(path: Path, offset: int, nbytes: int) -> bytearray:
    """Bytes [offset, offset+nbytes) of a file, checked against its size before allocating."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if offset < 0 or nbytes < 0 or offset + nbytes > size:
            raise CorruptFile(
                "The file is shorter than its own index says; it is probably truncated.",
                f"{path}: wanted bytes {offset}..{offset + nbytes}, file has {size}",
            )
        buf = bytearray(nbytes)
        f.seek(offset)
        f.readinto(buf)
        return buf


def read_tensor(info: TensorInfo) -> torch.Tensor:
    import torch

    if info.storage is None:
        raise CheckpointError(f"The tensor '{info.name}' has no stored data (it is a meta tensor).")
    dtype = getattr(torch, info.storage.dtype, None)
    if not isinstance(dtype, torch.dtype) or info.storage.dtype.startswith(("q", "bits")):
        raise CheckpointError(f"Reading tensors of type {info.storage.dtype} is not supported.")
    raw = storage_bytes(info.storage)
    if info.storage.byteorder == "big" and itemsize(info.storage.dtype) > 1:
        raw = _swap_bytes(raw, itemsize(info.storage.dtype))
    flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    if info.dtype != info.storage.dtype:
        flat = flat.view(getattr(torch, info.dtype))
    stride = info.stride if info.stride is not None else info.contiguous_stride
    _check_bounds(info, stride, flat.numel())
    return flat.as_strided(info.shape, stride, info.storage_offset)


def _check_bounds(info: TensorInfo, stride: tuple[int, ...], available: int) -> None:
    if len(stride) != len(info.shape):
        raise CorruptFile(f"The tensor '{info.name}' has a damaged layout record.",
                          f"shape {info.shape} vs stride {stride}")
    if info.numel == 0:
        return
    last = info.storage_offset + sum((d - 1) * s for d, s in zip(info.shape, stride, strict=True))
    if info.storage_offset < 0 or min(stride, default=0) < 0 or last >= available:
        raise CorruptFile(
            f"The tensor '{info.name}' points outside its stored data; the file is damaged.",
            f"offset {info.storage_offset}, stride {stride}, shape {info.shape}, storage {available}",
        )


def _swap_bytes(raw: bytearray, size: int) -> bytearray:
    import numpy as np

    arr = np.frombuffer(raw, dtype=f">u{size}" if size <= 8 else ">c16")
    return bytearray(arr.astype(arr.dtype.newbyteorder("<")).tobytes())

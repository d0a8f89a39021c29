"""Reading one tensor lazily from where its TensorInfo says its bytes live (imports torch).

`read_tensor` returns what torch.load returns for that tensor. A quantized tensor (qint8, quint8,
qint32, quint4x2, ...) comes back quantized, as torch.load gives it: the same `int_repr()`,
`qscheme()`, scale(s), zero point(s), axis, shape, stride and offset. Callers that want real
values call `.dequantize()` on it (or use `read_dequantized`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.dtypes import PACKED_BITS, is_quantized, itemsize
from core.errors import CheckpointError, CorruptFile
from core.model import PER_TENSOR_AFFINE, Quantization, Storage, TensorInfo

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
    if info.quantization is not None and is_quantized(info.dtype) and info.dtype == info.storage.dtype:
        return _read_quantized(info, info.quantization)
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


def read_dequantized(info: TensorInfo) -> torch.Tensor:
    """The tensor's real values: dequantized (float32) for a quantized tensor, else as stored."""
    tensor = read_tensor(info)
    return tensor.dequantize() if tensor.is_quantized else tensor


def _read_quantized(info: TensorInfo, quant: Quantization) -> torch.Tensor:
    """What torch._utils._rebuild_qtensor builds: an empty quantized tensor of the right kind,
    then `set_` onto the stored bytes (only numbers from the file reach torch, never a callable)."""
    import torch

    assert info.storage is not None
    dtype = getattr(torch, info.dtype)
    raw = storage_bytes(info.storage)
    if info.storage.byteorder == "big" and itemsize(info.dtype) > 1:
        raw = _swap_bytes(raw, itemsize(info.dtype))
    stride = info.stride if info.stride is not None else info.contiguous_stride
    bits = PACKED_BITS.get(info.dtype)
    _check_bounds(info, stride, len(raw) * 8 // bits if bits else len(raw) // itemsize(info.dtype))
    data = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
    try:
        if quant.scheme == PER_TENSOR_AFFINE:
            tensor = torch._empty_affine_quantized(info.shape, scale=quant.scale,
                                                   zero_point=quant.zero_point, dtype=dtype)
        else:
            scales, zero_points = _channel_values(quant)
            tensor = torch._empty_per_channel_affine_quantized(
                info.shape, scales=scales, zero_points=zero_points, axis=quant.axis, dtype=dtype)
        tensor.set_(data.untyped_storage(), info.storage_offset, info.shape, stride)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CorruptFile(f"The quantized tensor '{info.name}' could not be rebuilt; the file is "
                          "damaged.", f"{type(exc).__name__}: {exc}") from None
    return tensor


def _channel_values(quant: Quantization) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scales and zero points as torch.load builds them."""
    import torch

    if isinstance(quant.scales, TensorInfo) and isinstance(quant.zero_points, TensorInfo):
        return read_tensor(quant.scales), read_tensor(quant.zero_points)
    floats = quant.scheme != "per_channel_affine"  # lists: the dtypes _rebuild_qtensor uses
    return (torch.tensor(quant.scales, dtype=torch.float if floats else torch.double),
            torch.tensor(quant.zero_points, dtype=torch.float if floats else torch.long))


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

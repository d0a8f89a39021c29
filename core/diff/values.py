"""Value diff of two tensors, streamed in chunks so memory stays bounded (imports torch lazily).

Metrics (B is the reference): max |a-b|, mean |a-b|, relative L2 = ||a-b|| / ||b||, cosine similarity,
relative change = ||b-a|| / ||a|| (how far B moved from A, e.g. a fine-tune), bit-identical (same
dtype and the same bytes). Tensors of different dtypes are compared after upcasting
(float32, or float64 when either side is float64 or not floating). `close` follows torch.isclose:
|a-b| <= atol + rtol*|b| everywhere; NaN matches NaN and inf matches the same inf, any other
non-finite disagreement makes the tensor `different`. Default tolerances are torch.testing's for the
less precise of the two dtypes (fp16: rtol 1e-3, atol 1e-5; bf16: rtol 1.6e-2, atol 1e-5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.dtypes import itemsize
from core.errors import CheckpointError, CorruptFile
from core.model import TensorInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch

IDENTICAL, CLOSE, DIFFERENT, SKIPPED = "identical", "close", "different", "skipped"
CHUNK = 1 << 20  # elements per step: a few MB, so the per-chunk work stays in cache
TOLERANCES: dict[str, tuple[float, float]] = {  # dtype -> (rtol, atol), as torch.testing
    "float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5), "float32": (1.3e-6, 1e-5),
    "float64": (1e-7, 1e-7), "float8_e4m3fn": (0.125, 1e-3), "float8_e4m3fnuz": (0.125, 1e-3),
    "float8_e5m2": (0.25, 1e-3), "float8_e5m2fnuz": (0.25, 1e-3), "float8_e8m0fnu": (1.0, 1e-3),
}
LOW_PRECISION = {"float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                 "float8_e5m2fnuz", "float8_e8m0fnu"}


@dataclass(slots=True)
class ValueDiff:
    status: str  # identical | close | different | skipped
    max_abs: float = 0.0
    mean_abs: float = 0.0
    rel_l2: float = 0.0
    cosine: float = 1.0
    bit_identical: bool = False
    nonfinite_mismatch: int = 0  # positions where one side is NaN/inf and the other is not the same
    atol: float = 0.0
    rtol: float = 0.0
    note: str = ""
    rel_change: float = 0.0  # ||b-a|| / ||a||; inf when A is all zeros and B is not

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "max_abs": self.max_abs, "mean_abs": self.mean_abs,
                "rel_l2": self.rel_l2, "cosine": self.cosine, "bit_identical": self.bit_identical,
                "nonfinite_mismatch": self.nonfinite_mismatch, "atol": self.atol, "rtol": self.rtol,
                "note": self.note, "rel_change": self.rel_change}


def tolerances(dtype_a: str, dtype_b: str, atol: float | None = None,
               rtol: float | None = None) -> tuple[float, float]:
    """(atol, rtol): the given ones, else the looser default of the two dtypes."""
    r_a, a_a = TOLERANCES.get(dtype_a, (0.0, 0.0))
    r_b, a_b = TOLERANCES.get(dtype_b, (0.0, 0.0))
    return (max(a_a, a_b) if atol is None else atol), (max(r_a, r_b) if rtol is None else rtol)


@dataclass
class _Acc:
    n: int = 0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    ss_d: float = 0.0  # sums of squares of a-b, a, b (a·b follows: (ss_a + ss_b - ss_d) / 2)
    ss_a: float = 0.0
    ss_b: float = 0.0
    nonfinite: int = 0
    identical: bool = True
    close: bool = True


class Scratch:
    """Buffers reused from chunk to chunk and tensor to tensor (no allocation per chunk)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, key: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        import torch

        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype)
        return buf[:n]


def compare_tensors(a: TensorInfo, b: TensorInfo, atol: float | None = None,
                    rtol: float | None = None, tick: Callable[[int], None] | None = None,
                    scratch: Scratch | None = None) -> ValueDiff:
    """Compare two tensors of the same shape chunk by chunk; `tick(elements)` after each chunk."""
    import torch

    atol_, rtol_ = tolerances(a.dtype, b.dtype, atol, rtol)
    if "complex" in a.dtype or "complex" in b.dtype:
        return ValueDiff(SKIPPED, atol=atol_, rtol=rtol_, note="complex tensors are not compared")
    both_low = a.dtype in LOW_PRECISION and b.dtype in LOW_PRECISION
    work = torch.float32 if both_low else torch.float64
    acc, scratch = _Acc(), scratch or Scratch()
    try:
        for x, y in zip(stream(a, scratch=scratch, key="a"), stream(b, scratch=scratch, key="b"),
                        strict=True):
            _accumulate(acc, x, y, work, (atol_, rtol_), scratch, whole=x.numel() == a.numel)
            if tick is not None:
                tick(x.numel())
    except (RuntimeError, TypeError) as exc:  # a dtype torch cannot upcast (e.g. packed float4)
        return ValueDiff(SKIPPED, atol=atol_, rtol=rtol_, note=f"cannot compare: {exc}")
    return _finish(acc, a.dtype == b.dtype, atol_, rtol_)


def _accumulate(acc: _Acc, a: torch.Tensor, b: torch.Tensor, work: torch.dtype,
                tol: tuple[float, float], scratch: Scratch, whole: bool = False) -> None:
    """Add one chunk; `whole`: it is the entire tensor (identical then needs no norms)."""
    import torch

    n = a.numel()
    acc.n += n
    x = a if a.dtype == work else scratch.get("x", n, work).copy_(a)
    y = b if b.dtype == work else scratch.get("y", n, work).copy_(b)
    same_bits = a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    acc.identical = acc.identical and same_bits
    if same_bits and whole:
        return  # cosine 1, relative L2 0 without any sum
    if same_bits:
        ss = float(torch.dot(x, x))
        if math.isfinite(ss):  # else NaN/inf inside: the general path below leaves them out
            acc.ss_a, acc.ss_b = acc.ss_a + ss, acc.ss_b + ss
            return
    d = torch.sub(x, y, out=scratch.get("d", n, work)).abs_()
    top = float(d.max()) if n else 0.0
    if not math.isfinite(top):
        x, y = _drop_nonfinite(acc, x, y)
        d = torch.sub(x, y, out=scratch.get("d", n, work)).abs_()
        top = float(d.max())
    acc.max_abs = max(acc.max_abs, top)
    acc.sum_abs += float(d.sum())
    acc.ss_d += float(torch.dot(d, d))
    acc.ss_a += float(torch.dot(x, x))
    ss_b = float(torch.dot(y, y))
    acc.ss_b += ss_b
    if acc.close and top > tol[0]:
        acc.close = _within(d, y, top, ss_b, tol, scratch)


def _within(d: torch.Tensor, y: torch.Tensor, top: float, ss_b: float, tol: tuple[float, float],
            scratch: Scratch) -> bool:
    """|a-b| <= atol + rtol*|b| everywhere (overwrites d); cheap bounds first rule most out."""
    import torch

    atol, rtol = tol
    if top > atol + rtol * math.sqrt(ss_b):  # max|b| <= ||b||
        return False
    low, high = torch.aminmax(y)
    if top > atol + rtol * max(-float(low), float(high)):
        return False
    bound = torch.abs(y, out=scratch.get("t", y.numel(), y.dtype)).mul_(rtol).add_(atol)
    return float(d.sub_(bound).max()) <= 0


def _drop_nonfinite(acc: _Acc, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Count non-finite disagreements; zero every non-finite position so metrics cover the rest."""
    import torch

    finite = torch.isfinite(x) & torch.isfinite(y)
    agree = (x == y) | (torch.isnan(x) & torch.isnan(y))
    acc.nonfinite += int((~finite & ~agree).sum())
    zero = torch.zeros((), dtype=x.dtype)
    return torch.where(finite, x, zero), torch.where(finite, y, zero)


def _finish(acc: _Acc, same_dtype: bool, atol: float, rtol: float) -> ValueDiff:
    identical = acc.identical and same_dtype
    if acc.ss_a == 0 and acc.ss_b == 0:
        cosine = 1.0
    elif acc.ss_a == 0 or acc.ss_b == 0:
        cosine = math.nan  # undefined: one side is all zeros
    else:
        dot = (acc.ss_a + acc.ss_b - acc.ss_d) / 2
        cosine = max(-1.0, min(1.0, dot / math.sqrt(acc.ss_a * acc.ss_b)))
    rel = change = 0.0 if acc.ss_d == 0 else math.inf
    if acc.ss_b > 0:
        rel = math.sqrt(acc.ss_d) / math.sqrt(acc.ss_b)
    if acc.ss_a > 0:
        change = math.sqrt(acc.ss_d) / math.sqrt(acc.ss_a)
    close = acc.close and acc.nonfinite == 0
    status = IDENTICAL if identical else CLOSE if close else DIFFERENT
    return ValueDiff(status, acc.max_abs, acc.sum_abs / acc.n if acc.n else 0.0, rel, cosine,
                     identical, acc.nonfinite, atol, rtol, rel_change=change)


def stream(info: TensorInfo, chunk: int | None = None, scratch: Scratch | None = None,
           key: str = "read") -> Iterator[torch.Tensor]:
    """A tensor's elements as 1-D chunks; a contiguous raw tensor is read a chunk at a time.

    A chunk is only valid until the next one is asked for (its buffer is reused)."""
    chunk = chunk or CHUNK
    storage = info.storage
    contiguous = info.stride is None or info.stride == info.contiguous_stride or info.numel <= 1
    if (storage is not None and storage.encoding == "raw" and contiguous
            and (storage.byteorder == "little" or itemsize(info.dtype) == 1)
            and not info.dtype.startswith(("q", "bits"))):
        yield from _stream_raw(info, chunk, scratch or Scratch(), key)
        return
    from core.tensor_io import read_tensor

    tensor = read_tensor(info)
    flat = (tensor.dequantize() if tensor.is_quantized else tensor).reshape(-1)
    for start in range(0, flat.numel(), chunk):
        yield flat[start:start + chunk]


def _stream_raw(info: TensorInfo, chunk: int, scratch: Scratch, key: str) -> Iterator[torch.Tensor]:
    import torch

    storage = info.storage
    assert storage is not None
    size = itemsize(info.dtype)
    start, nbytes = info.storage_offset * size, info.numel * size
    if info.storage_offset < 0 or start + nbytes > storage.nbytes:
        raise CorruptFile(f"The tensor '{info.name}' points outside its stored data; the file is "
                          "damaged.", f"offset {start}, {nbytes} bytes, storage {storage.nbytes}")
    dtype = getattr(torch, info.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"Reading tensors of type {info.dtype} is not supported.")
    with open(storage.path, "rb") as f:
        if storage.offset + start + nbytes > f.seek(0, 2):
            raise CorruptFile("The file is shorter than its own index says; it is probably "
                              "truncated.", f"{storage.path}: tensor '{info.name}'")
        f.seek(storage.offset + start)
        buf = scratch.get(key, min(chunk, info.numel) * size, torch.uint8)
        left = info.numel
        while left:
            n = min(chunk, left)
            part = buf[: n * size]
            if f.readinto(part.numpy()) != n * size:
                raise CorruptFile(f"The file ended while reading '{info.name}'; it is truncated.")
            yield part.view(dtype)
            left -= n

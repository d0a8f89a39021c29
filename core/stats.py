"""Value statistics of one tensor (min/max/mean/std, zeros, NaN/Inf, histogram), computed in chunks.

Reads the tensor through `checkpoint.read` (imports torch lazily). Memory: the stored bytes once, plus
one chunk at a time in float64 — a 1 GB tensor never gets a whole float32/float64 copy (a
non-contiguous view is made contiguous once, in its own dtype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import CheckpointError
from core.progress import Progress, step

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from core.model import Checkpoint

CHUNK = 1 << 22  # elements per chunk (32 MB as float64)


@dataclass
class TensorStats:
    name: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    finite: int = 0  # elements that are neither NaN nor ±Inf
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    min: float | None = None  # over finite values; None when there are none
    max: float | None = None
    mean: float | None = None
    std: float | None = None  # sample standard deviation (torch.std's default), None below 2 values
    hist_counts: list[int] = field(default_factory=list)
    hist_edges: list[float] = field(default_factory=list)  # len(hist_counts) + 1

    @property
    def inf(self) -> int:
        return self.posinf + self.neginf

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "dtype": self.dtype, "shape": list(self.shape), "numel": self.numel,
            "finite": self.finite, "zeros": self.zeros, "nan": self.nan, "posinf": self.posinf,
            "neginf": self.neginf, "min": self.min, "max": self.max, "mean": self.mean,
            "std": self.std, "histogram": {"counts": self.hist_counts, "edges": self.hist_edges},
        }


@dataclass
class _Moments:
    """Chan et al. pairwise merge of count/mean/M2, so chunks combine without losing precision."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, values: torch.Tensor, native: torch.Tensor) -> None:
        """Merge float64 `values`; min/max come from `native` (exact for int64)."""
        n = values.numel()
        if n == 0:
            return
        mean = values.mean().item()
        m2 = ((values - mean) ** 2).sum().item()
        delta, total = mean - self.mean, self.count + n
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.lo = min(self.lo, native.min().item())
        self.hi = max(self.hi, native.max().item())


def tensor_stats(
    checkpoint: Checkpoint, name: str, section: str | None = None,
    progress: Progress | None = None, bins: int = 64,
) -> TensorStats:
    """Statistics and a histogram of the finite values of one tensor."""
    info = checkpoint.find(name, section)
    if info.dtype.startswith("complex"):
        raise CheckpointError("Statistics for complex-valued tensors are not supported.")
    step(progress, 0, 1, "Reading tensor")
    flat = _comparable(checkpoint.read(name, section).reshape(-1))
    stats = TensorStats(name, info.dtype, tuple(info.shape), flat.numel())
    moments = _Moments()
    for chunk, native in _chunks(flat, progress, "Computing statistics", passes=(0, 2)):
        _count(chunk, native, stats, moments)
    _finish(stats, moments)
    if moments.count:
        _histogram(flat, stats, moments, bins, progress)
    return stats


def _torch() -> Any:
    import torch

    return torch


def _comparable(flat: torch.Tensor) -> torch.Tensor:
    """bool -> uint8 and float8 -> float16 (both lack min/max); other dtypes unchanged (no copy)."""
    torch = _torch()
    if flat.is_quantized:  # statistics of the real values
        return flat.dequantize()
    if flat.dtype == torch.bool:
        return flat.view(torch.uint8)
    if flat.dtype.is_floating_point and flat.element_size() == 1:
        return flat.to(torch.float16)
    return flat


def _chunks(flat: torch.Tensor, progress: Progress | None, text: str, passes: tuple[int, int]):
    """(float64, native) chunks of a flat tensor; progress counts pass `passes[0]` of `passes[1]`."""
    torch = _torch()
    total = flat.numel()
    for start in range(0, total, CHUNK):
        step(progress, passes[0] * total + start, passes[1] * total, text)
        native = flat[start:start + CHUNK]
        yield native.to(torch.float64), native
    step(progress, (passes[0] + 1) * total, passes[1] * total, text)


def _count(chunk: torch.Tensor, native: torch.Tensor, stats: TensorStats, moments: _Moments) -> None:
    torch = _torch()
    finite = torch.isfinite(chunk)
    stats.zeros += int((chunk == 0).sum())
    stats.nan += int(torch.isnan(chunk).sum())
    stats.posinf += int((chunk == math.inf).sum())
    stats.neginf += int((chunk == -math.inf).sum())
    if bool(finite.all()):
        values = chunk
    else:
        values, native = chunk[finite], native[finite]
    stats.finite += values.numel()
    moments.add(values, native)


def _finish(stats: TensorStats, moments: _Moments) -> None:
    if moments.count == 0:
        return
    stats.min, stats.max, stats.mean = moments.lo, moments.hi, moments.mean
    if moments.count > 1:
        stats.std = math.sqrt(max(moments.m2, 0.0) / (moments.count - 1))


def _histogram(flat: torch.Tensor, stats: TensorStats, moments: _Moments, bins: int,
               progress: Progress | None) -> None:
    torch = _torch()
    lo, hi = moments.lo, moments.hi
    if not flat.dtype.is_floating_point:  # integers/bool: one bin per value when few values
        bins = max(1, min(bins, int(hi - lo) + 1))
        lo, hi = lo - 0.5, hi + 0.5
    elif lo == hi:
        lo, hi, bins = lo - 0.5, hi + 0.5, 1
    counts = torch.zeros(bins, dtype=torch.int64)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    width = (hi - lo) / bins
    for chunk, _ in _chunks(flat, progress, "Computing histogram", passes=(1, 2)):
        values = chunk[torch.isfinite(chunk)]
        index = ((values - lo) / width).floor().clamp_(0, bins - 1).to(torch.int64)
        counts += torch.bincount(index, minlength=bins)
    stats.hist_counts = [int(c) for c in counts]
    stats.hist_edges = [float(e) for e in edges]

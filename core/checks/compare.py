"""Comparing one output of two runners: the numbers a parity row shows, and pass/fail.

A value is outside tolerance when |candidate - reference| > atol + rtol * |reference| (like
numpy.isclose with the reference as `b`). NaN/Inf are counted, never turned into huge differences:
positions where both runners give the same non-finite value (NaN and NaN, +Inf and +Inf) agree;
a non-finite value on one side only is a failure reported as such. The difference statistics are
over the positions where both values are finite; max relative difference over those where the
reference is not zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# (atol, rtol) by dtype; integer and bool outputs must match exactly.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7), "float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}
LOOSENESS = ("float64", "float32", "float16", "bfloat16")


def default_tolerance(*dtypes: str) -> tuple[float, float]:
    """The tolerance of the least precise floating dtype among `dtypes`; (0, 0) when none floats."""
    floats = [d for d in dtypes if d in DEFAULT_TOLERANCES]
    if not floats:
        return (0.0, 0.0)
    return DEFAULT_TOLERANCES[max(floats, key=LOOSENESS.index)]


def dtype_kind(dtype: str) -> str:
    if dtype == "bool":
        return "bool"
    return "float" if dtype.startswith(("float", "bfloat")) else "int"


@dataclass
class OutputComparison:
    """One output at one input shape: reference vs candidate."""

    name: str
    candidate_name: str
    reference_shape: list[int]
    candidate_shape: list[int]
    reference_dtype: str
    candidate_dtype: str
    atol: float
    rtol: float
    numel: int = 0
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    mean_abs_diff: float | None = None
    cosine_similarity: float | None = None
    outside_count: int = 0
    outside_percent: float = 0.0
    nonfinite_reference: int = 0  # NaN/Inf values in the reference
    nonfinite_candidate: int = 0
    nonfinite_mismatch: int = 0  # positions non-finite on one side only (or different Infs)
    worst_index: list[int] = field(default_factory=list)
    worst_values: list[float] = field(default_factory=list)  # [reference, candidate] there
    message: str | None = None  # why it failed, one sentence; None when it passed

    @property
    def passed(self) -> bool:
        return self.message is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def compare_output(name: str, ref: np.ndarray, got: np.ndarray, *, candidate_name: str | None = None,
                   ref_dtype: str | None = None, got_dtype: str | None = None,
                   atol: float | None = None, rtol: float | None = None) -> OutputComparison:
    """Compare `got` with `ref`; tolerances default by dtype (see DEFAULT_TOLERANCES)."""
    ref_dtype, got_dtype = ref_dtype or ref.dtype.name, got_dtype or got.dtype.name
    tol = default_tolerance(ref_dtype, got_dtype)
    row = OutputComparison(name, candidate_name or name, list(ref.shape), list(got.shape),
                           ref_dtype, got_dtype, tol[0] if atol is None else atol,
                           tol[1] if rtol is None else rtol, numel=int(ref.size))
    if dtype_kind(ref_dtype) != dtype_kind(got_dtype):
        row.message = (f"Output '{name}' is {ref_dtype} in the reference but {got_dtype} in the "
                       "candidate.")
    elif row.reference_shape != row.candidate_shape:
        row.message = (f"Output '{name}' has the shape {row.reference_shape} in the reference but "
                       f"{row.candidate_shape} in the candidate.")
    else:
        _fill_stats(row, ref.astype(np.float64), got.astype(np.float64))
    return row


def _fill_stats(row: OutputComparison, a: np.ndarray, b: np.ndarray) -> None:
    fa, fb = np.isfinite(a), np.isfinite(b)
    both = fa & fb
    same = ~fa & ~fb & ((np.isnan(a) & np.isnan(b)) | (a == b))
    mismatch = (~fa | ~fb) & ~same
    row.nonfinite_reference, row.nonfinite_candidate = int((~fa).sum()), int((~fb).sum())
    row.nonfinite_mismatch = int(mismatch.sum())
    diff = np.zeros(a.shape)
    np.subtract(a, b, out=diff, where=both)
    diff = np.abs(diff)
    absref = np.abs(np.where(both, a, 0.0))
    outside = (diff > row.atol + row.rtol * absref) | mismatch
    row.outside_count = int(outside.sum())
    row.outside_percent = 100.0 * row.outside_count / a.size if a.size else 0.0
    if both.any():
        row.max_abs_diff = float(diff.max())
        row.mean_abs_diff = float(diff[both].mean())
        nonzero = both & (absref > 0)
        row.max_rel_diff = float((diff[nonzero] / absref[nonzero]).max()) if nonzero.any() else 0.0
        row.cosine_similarity = _cosine(a[both], b[both])
        worst = np.unravel_index(int(np.argmax(diff)), a.shape) if a.ndim else ()
        row.worst_index = [int(i) for i in worst]
        row.worst_values = [float(a[worst]), float(b[worst])]
    row.message = _failure(row)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


def _failure(row: OutputComparison) -> str | None:
    if row.outside_count == 0:
        return None
    if row.nonfinite_mismatch:
        within = row.outside_count - row.nonfinite_mismatch
        more = f", and {within} other values are outside tolerance" if within else ""
        return (f"Output '{row.name}' is NaN or infinite at {row.nonfinite_mismatch} positions "
                f"where the other runner is not (reference has {row.nonfinite_reference}, "
                f"candidate {row.nonfinite_candidate} such values){more}.")
    return (f"Output '{row.name}': {row.outside_count} of {row.numel} values "
            f"({row.outside_percent:.3g}%) differ by more than atol {row.atol:g} + rtol "
            f"{row.rtol:g}·|reference|; the largest difference is {row.max_abs_diff:.4g} at "
            f"{row.worst_index}.")

"""Task-level verdicts beside the raw tolerances, and the tolerance profile of a comparison.

Raw tolerances say whether every value is close; the task-level view says whether the model still
does its job on the test inputs:

- classifier-like outputs (floating, at least 2-D, last axis of 2 or more classes): how often the
  top-1 class (and, with more than 5 classes, the top-5 set) of the candidate agrees with the
  reference, over every row of every test input;
- embeddings (an output whose name says embedding, pooled, hidden or features): the distribution
  of the per-row cosine similarity (min, 5th percentile, median).

The profile follows the target: an int8 (quantized) model is never bit-close to its float
reference, so it gets loose raw tolerances and its pass/fail also needs the task-level verdicts to
hold; for float targets the tolerances are the dtype defaults (core.checks.compare) and the
verdicts are shown for information.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.runtime.base import Runner

EMBEDDING_NAME = re.compile(r"embed|pool|hidden|feature|sentence", re.IGNORECASE)


@dataclass(frozen=True)
class Profile:
    name: str
    atol: float | None  # None: by each output's dtype
    rtol: float | None
    min_top1: float  # fraction of rows whose top-1 class must agree
    min_top5: float
    min_cosine: float  # the 5th percentile of per-row cosine similarity must reach this
    decides: bool  # whether the task-level verdicts count towards pass/fail

    def describe(self) -> str:
        tol = ("atol/rtol by output dtype (float32 1e-4, float16 1e-2, bfloat16 2e-2)"
               if self.atol is None else f"atol {self.atol:g}, rtol {self.rtol:g}")
        how = "task-level verdicts must hold too" if self.decides else "verdicts for information"
        return (f"{self.name} profile: {tol}; top-1 agreement >= {self.min_top1:.0%}, top-5 >= "
                f"{self.min_top5:.0%}, cosine (5th percentile) >= {self.min_cosine:g}; {how}")


PROFILES = {
    "float": Profile("float", None, None, 1.0, 1.0, 0.9999, decides=False),
    "int8": Profile("int8", 0.1, 0.1, 0.97, 0.99, 0.99, decides=True),
}


def target_profile(*runners: Runner) -> Profile:
    """int8 when either runner is a quantized model (ONNX integer/quantize ops, TorchScript
    quantized ops); else the float profile."""
    return PROFILES["int8"] if any(_is_int8(r) for r in runners) else PROFILES["float"]


def _is_int8(runner: Runner) -> bool:
    backend = getattr(runner, "backend", "")
    try:
        if backend == "onnxruntime" and runner.source:
            import onnx

            model = onnx.load(runner.source, load_external_data=False)
            return any("Integer" in n.op_type or "Quantize" in n.op_type or
                       n.op_type.startswith("QLinear") for n in model.graph.node)
        if backend == "torchscript":
            return "quantized::" in str(runner.module.inlined_graph)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a model we cannot read this way is treated as float
        return False
    return False


@dataclass
class _Tally:
    kind: str  # "classes" | "embedding"
    rows: int = 0
    top1: int = 0
    top5: int = 0
    classes: int = 0
    cosines: list[np.ndarray] = field(default_factory=list)


class TaskTally:
    """Collects the task-level agreement of each output over the test inputs."""

    def __init__(self) -> None:
        self.outputs: dict[str, _Tally] = {}

    def add(self, name: str, ref: np.ndarray, got: np.ndarray) -> None:
        if ref.shape != got.shape or ref.dtype.kind != "f" or ref.ndim < 2 or ref.shape[-1] < 2:
            return
        a = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
        b = got.reshape(-1, got.shape[-1]).astype(np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return
        kind = "embedding" if EMBEDDING_NAME.search(name) else "classes"
        tally = self.outputs.setdefault(name, _Tally(kind))
        tally.rows += a.shape[0]
        if kind == "embedding":
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            tally.cosines.append(np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300),
                                          1.0))
            return
        tally.classes = a.shape[1]
        tally.top1 += int((a.argmax(axis=1) == b.argmax(axis=1)).sum())
        if a.shape[1] > 5:
            top_a, top_b = np.argsort(-a, axis=1)[:, :5], np.argsort(-b, axis=1)[:, :5]
            tally.top5 += sum(set(x) == set(y) for x, y in zip(top_a, top_b, strict=True))

    def verdicts(self, profile: Profile) -> list[dict[str, Any]]:
        return [_verdict(name, tally, profile) for name, tally in self.outputs.items()]


def _verdict(name: str, tally: _Tally, profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {"output": name, "kind": tally.kind, "rows": tally.rows,
                           "decides": profile.decides}
    if tally.kind == "embedding":
        cos = np.concatenate(tally.cosines)
        low, p5, median = (float(v) for v in np.percentile(cos, (0, 5, 50)))
        out |= {"cosine_min": low, "cosine_p5": p5, "cosine_median": median,
                "passed": p5 >= profile.min_cosine}
        out["reason"] = (f"cosine per row over {tally.rows} rows: min {low:.6f}, 5th percentile "
                         f"{p5:.6f}, median {median:.6f} (needs >= {profile.min_cosine:g})")
        return out
    top1 = tally.top1 / tally.rows
    top5 = tally.top5 / tally.rows if tally.classes > 5 else None
    passed = top1 >= profile.min_top1 and (top5 is None or top5 >= profile.min_top5)
    out |= {"top1_agreement": top1, "top5_agreement": top5, "passed": passed}
    five = f", top-5 set {top5:.1%}" if top5 is not None else ""
    out["reason"] = (f"top-1 class agrees on {tally.top1} of {tally.rows} rows ({top1:.1%}){five} "
                     f"(needs >= {profile.min_top1:.0%})")
    return out


def profile_dict(profile: Profile) -> dict[str, Any]:
    return asdict(profile) | {"description": profile.describe()}

"""Latency: for each runner and batch size, load time, first-inference time, then `warmup` untimed
runs, then `runs` timed runs (stopping early once `budget_s` seconds are spent), each timed alone
with time.perf_counter_ns around `runner.call` on an input prepared once (validation and numpy ->
torch conversion are never timed). The first run is reported on its own, never as steady state.

    result = measure_latency([ort_runner, eager_runner], "x: float32[batch(1..64), 3, 224, 224]",
                             batches=[1, 16, 64], warmup=10, runs=100)
    result.sweep()   # per runner: batch -> p50/p90/p99/mean/throughput, for plots

Memory, per runner and batch: the process's resident-set high-water mark is reset just before the
batch (Linux: /proc/self/clear_refs), so `peak_rss_bytes` is the peak while that runner ran that
batch and `extra_rss_bytes` how far it rose above the resident size just before; both are None where
the platform cannot reset the peak (one process-wide number would be the same for every runner).
A runner that fails
at one batch size records the error there; the other batches still run. Progress: one step per run;
a cancel raises Cancelled and returns nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.checks.common import carry_dtypes, make_inputs, match_names, rename, resolve_specs
from core.errors import CheckFailed
from core.inputs import EXAMPLE, InputSpec, dynamic_dims, format_specs
from core.progress import Progress, step
from core.runtime.base import Runner

PERCENTILES = (50, 90, 95, 99)


@dataclass
class LatencyStats:
    """Steady-state statistics of the timed runs, in milliseconds; throughput in samples/s."""

    runs: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput: float

    @classmethod
    def from_ns(cls, times_ns: Sequence[int], batch: int) -> LatencyStats:
        ms = np.asarray(times_ns, dtype=np.float64) / 1e6
        p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
        mean = float(ms.mean())
        std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        return cls(int(ms.size), mean, p50, p90, p95, p99, float(ms.min()), float(ms.max()), std,
                   batch * 1000.0 / mean if mean > 0 else float("inf"))


@dataclass
class BatchLatency:
    batch: int
    input_shapes: dict[str, list[int]]
    first_ms: float | None = None  # the first inference, alone (allocations, compilation)
    warmup: int = 0
    stats: LatencyStats | None = None
    times_ms: list[float] = field(default_factory=list)  # every timed run, in order
    peak_rss_bytes: int | None = None  # peak resident size while this batch ran
    extra_rss_bytes: int | None = None  # that peak minus the resident size just before the batch
    rss_bytes: int | None = None
    error: str | None = None
    error_details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunnerLatency:
    runner: dict[str, Any]  # Runner.info(): name, backend, device, threads, load_seconds, ...
    batches: list[BatchLatency] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runner": self.runner, "batches": [b.to_dict() for b in self.batches]}


@dataclass
class LatencyResult:
    """`bool(result)` is True when every runner ran at every batch size."""

    runners: list[RunnerLatency]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(b.error is None for r in self.runners for b in r.batches)

    def __bool__(self) -> bool:
        return self.ok

    def sweep(self) -> dict[str, dict[str, list[Any]]]:
        """Per runner (unique label): batch sizes and the matching p50/p90/p99/mean/throughput
        (None where that batch failed) - the latency-vs-batch plot's data."""
        out: dict[str, dict[str, list[Any]]] = {}
        for r in self.runners:
            label = r.runner["name"]
            label = label if label not in out else f"{label} #{len(out) + 1}"
            keys = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput")
            series: dict[str, list[Any]] = {"batch": [b.batch for b in r.batches]}
            for key in keys:
                series[key] = [getattr(b.stats, key) if b.stats else None for b in r.batches]
            out[label] = series
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "latency", "ok": self.ok, "settings": self.settings, "notes": self.notes,
                "runners": [r.to_dict() for r in self.runners], "sweep": self.sweep()}


def measure_latency(runners: Sequence[Runner], spec: str | Sequence[InputSpec] | None = None,
                    batches: Sequence[int] = (1, 16, 64), *, warmup: int = 10,
                    runs: int | None = 100, budget_s: float | None = None, seed: int = 0,
                    batch_dim: str | None = None, progress: Progress | None = None) -> LatencyResult:
    """Time every runner at every batch size (see the module docstring). `runs` is the number of
    timed runs (the most, when `budget_s` also limits the time; None: until the budget is spent)."""
    if not runners:
        raise CheckFailed("Give at least one model to time.")
    if runs is None and budget_s is None:
        raise CheckFailed("Give a number of timed runs or a time budget.")
    if (runs is not None and runs < 1) or warmup < 0 or (budget_s is not None and budget_s <= 0):
        raise CheckFailed("The number of runs and the time budget must be positive (warm-up: 0 or "
                          "more).")
    specs = resolve_specs(spec, runners)
    inputs = [(b, make_inputs(specs, point, seed)) for b, point in batch_points(specs, batches,
                                                                                 batch_dim)]
    notes: list[str] = []
    names = [s.name for s in specs]
    maps = [match_names(names, r, notes) for r in runners]
    for runner, mapping in zip(runners, maps, strict=True):
        carry_dtypes(specs, runner, mapping)
    cap = runs if runs is not None else sys.maxsize
    per_batch = 1 + warmup + (runs or 0)
    total, results = len(runners) * len(inputs) * per_batch, []
    step(progress, 0, total, "latency")
    for r, (runner, mapping) in enumerate(zip(runners, maps, strict=True)):
        row = RunnerLatency(runner.info())
        for b, (batch, arrays) in enumerate(inputs):
            base = (r * len(inputs) + b) * per_batch

            def tick(done: int, text: str, base: int = base) -> None:
                step(progress, min(base + done, total), total, text)

            row.batches.append(_measure_one(runner, rename(arrays, mapping), batch, warmup, cap,
                                            budget_s, tick))
        row.runner = runner.info()  # output names are known after a run
        results.append(row)
    settings = {"batches": list(batches), "warmup": warmup, "runs": runs, "budget_s": budget_s,
                "seed": seed, "inputs": format_specs(specs), "clock": "time.perf_counter_ns"}
    return LatencyResult(results, settings, list(dict.fromkeys(notes)))


def batch_points(specs: Sequence[InputSpec], batches: Sequence[int],
                 batch_dim: str | None = None) -> list[tuple[int, dict[str, int]]]:
    """The size overrides for each batch size: the dim named `batch_dim` (default: 'batch', else
    the first dynamic dim). A spec with no dynamic dim runs only at its own first-dim size."""
    if not batches:
        raise CheckFailed("Give at least one batch size.")
    dims = dynamic_dims(list(specs))
    name = batch_dim or ("batch" if "batch" in dims else next(iter(dims), None))
    if name is None:
        fixed = specs[0].dims[0].value if specs and specs[0].dims else None
        other = [b for b in batches if b != fixed]
        if other:
            raise CheckFailed(f"The input spec fixes every size, so it cannot run at batch "
                              f"{other[0]}; give the batch dim a name and range, e.g. '{EXAMPLE}'.")
        return [(b, {}) for b in batches]
    if name not in dims:
        raise CheckFailed(f"The input spec has no dynamic dim named '{name}'; its dynamic dims "
                          f"are: {', '.join(dims) or 'none'}.")
    return [(b, {name: b}) for b in batches]


def _measure_one(runner: Runner, arrays: dict[str, np.ndarray], batch: int, warmup: int, cap: int,
                 budget_s: float | None, tick: Callable[[int, str], None]) -> BatchLatency:
    row = BatchLatency(batch, {k: list(v.shape) for k, v in arrays.items()}, warmup=warmup)
    label = f"{runner.name}, batch {batch}"
    before = _rss_before_batch()
    try:
        feed = runner.prepare(arrays)
        start = time.perf_counter_ns()
        runner.call(feed)
        row.first_ms = (time.perf_counter_ns() - start) / 1e6
        tick(1, f"{label}: first run")
        for i in range(warmup):
            runner.call(feed)
            tick(2 + i, f"{label}: warm-up")
        times = _timed(runner, feed, cap, budget_s, lambda i: tick(2 + warmup + i, label))
    except CheckFailed as exc:
        row.error, row.error_details = exc.message, exc.details
        return row
    row.times_ms = [t / 1e6 for t in times]
    row.stats = LatencyStats.from_ns(times, batch)
    peak, row.rss_bytes = memory()
    if before is not None and peak is not None:
        row.peak_rss_bytes, row.extra_rss_bytes = peak, max(peak - before, 0)
    return row


def _rss_before_batch() -> int | None:
    """Reset the process's peak-RSS mark and return the resident size now; None where the
    platform cannot reset it, so no runner is shown another runner's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5": reset the high-water mark (Linux >= 4.0)
    except OSError:
        return None
    return _proc_status().get("VmRSS")


def _proc_status() -> dict[str, int]:
    """VmHWM/VmRSS from /proc/self/status, in bytes ({} where there is no such file)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _timed(runner: Runner, feed: dict[str, Any], cap: int, budget_s: float | None,
           tick: Callable[[int], None]) -> list[int]:
    """Nanoseconds of each timed run; only the call itself is inside the clock readings."""
    clock, call, times = time.perf_counter_ns, runner.call, []
    deadline = clock() + int(budget_s * 1e9) if budget_s is not None else None
    for i in range(cap):
        start = clock()
        call(feed)
        times.append(clock() - start)
        tick(i)
        if deadline is not None and clock() >= deadline:
            break
    return times


def memory() -> tuple[int | None, int | None]:
    """(peak RSS, current RSS) of this process in bytes, where the platform tells."""
    status = _proc_status()
    if status:  # Linux: VmHWM follows the reset in _rss_before_batch; ru_maxrss does not
        return status.get("VmHWM"), status.get("VmRSS")
    peak = current = None
    try:
        import psutil

        info = psutil.Process().memory_info()
        current, peak = info.rss, getattr(info, "peak_wset", None)  # peak_wset: Windows
    except ImportError:  # pragma: no cover - psutil is optional
        pass
    if peak is None:
        try:
            import resource

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = maxrss if sys.platform == "darwin" else maxrss * 1024
        except ImportError:  # pragma: no cover - Windows without psutil
            pass
    return peak, current

"""Benchmark: the GUI-thread time of showing a diff of very many keys (mixture-of-experts checkpoints
have 40k-100k tensors) in the diff view's module tree and change plot.

Run on demand from the repository root:  QT_QPA_PLATFORM=offscreen python tests/bench/bench_diff_view.py
[--keys 50000 200000] [--rounds 3]
Synthetic compared keys (no files). Per size, alternated rounds of:
- baseline: `DiffInsight.set_opened` with a result alone, so the view builds the tree and the plot
  data on the GUI thread (what it did before the worker prepared them);
- handed over: `set_opened` with the tree and plot data built beforehand by `shown_diff` (the
  worker's part, timed apart);
each followed by the first paint, and by the full collection that frees the replaced result (the
app collects on the GUI thread). Prints medians. Target: every GUI-thread step <= 0.5 s at 200k.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication  # noqa: E402

from core.diff.structure import SAME, DiffResult, KeyDiff, SectionDiff  # noqa: E402
from core.diff.values import CLOSE, DIFFERENT, IDENTICAL, ValueDiff  # noqa: E402
from gui.models.diff_tree import shown_diff  # noqa: E402
from gui.views.diff_insight import DiffInsight  # noqa: E402
from gui.views.diff_jobs import Opened  # noqa: E402

TARGET_S = 0.5


def synthetic_result(count: int, seed: int = 0) -> DiffResult:
    """`count` compared keys of a mixture-of-experts shape: 100 experts x 3 weights per layer."""
    rng = random.Random(seed)
    keys = []
    for i in range(count):
        status = rng.choice((IDENTICAL, CLOSE, DIFFERENT))
        change = 0.0 if status == IDENTICAL else rng.random() * (1e-3 if status == CLOSE else 1.0)
        values = ValueDiff(status, rel_change=change)
        keys.append(KeyDiff(f"model.layers.{i // 300}.experts.{i // 3 % 100}.w{i % 3}.weight", SAME,
                            (16, 16), "float32", (16, 16), "float32", values=values))
    return DiffResult("a.safetensors", "b.safetensors", "safetensors", "safetensors",
                      [SectionDiff("model", "model", keys)], values_compared=True)


def timed(step: object) -> float:
    start = time.perf_counter()
    step()  # type: ignore[operator]
    return time.perf_counter() - start


def measure(app: QApplication, view: DiffInsight, count: int, rounds: int) -> dict[str, list[float]]:
    result = synthetic_result(count)
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label in ("baseline", "handed over"):
            worker = 0.0
            if label == "handed over":
                holder: list[object] = []
                worker = timed(lambda: holder.append(shown_diff(result)))  # noqa: B023
                opened = Opened(None, None, result, 0, 0, holder[0])  # type: ignore[arg-type]
            else:
                opened = Opened(None, None, result, 0, 0)  # type: ignore[arg-type]
            shown = timed(lambda: view.set_opened(opened))  # noqa: B023
            paint = timed(lambda: (app.processEvents(), view.grab()))
            collect = timed(gc.collect)  # frees the result shown before this one
            for name, seconds in ((f"{label}: set_opened", shown), (f"{label}: first paint", paint),
                                  (f"{label}: collection", collect), (f"{label}: worker", worker)):
                times.setdefault(name, []).append(seconds)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    gc.disable()  # as in the app: collections run only where the GUI thread asks for them
    view = DiffInsight()
    view.resize(1200, 800)
    view.show()
    app.processEvents()
    for count in args.keys:
        times = measure(app, view, count, args.rounds)
        print(f"{count:,} keys (median of {args.rounds}):")
        for name, seconds in times.items():
            print(f"  {name:<28} {statistics.median(seconds):6.2f} s")
        baseline, handed = (statistics.median(times[f"{label}: set_opened"])
                            for label in ("baseline", "handed over"))
        longest = max(statistics.median(times[f"handed over: {step}"])
                      for step in ("set_opened", "first paint", "collection"))
        print(f"  set_opened handed over / baseline: {handed / baseline:.2f}; longest GUI-thread step "
              f"{longest:.2f} s ({'within' if longest <= TARGET_S else 'OVER'} the {TARGET_S} s target)")


if __name__ == "__main__":
    main()

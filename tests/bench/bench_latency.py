"""Benchmark: the latency check's own overhead. For one small CNN in onnxruntime, the p50 that
`measure_latency` reports vs a bare `session.run` loop timed with perf_counter_ns in the same process
on the same session; rounds alternate so drift hits both alike. Target: within 5 %.

Run on demand:  python tests/bench/bench_latency.py [--runs 300] [--rounds 5] [--threads 1]
The last line is the ratio (check p50 / bare p50).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SPEC = "x: float32[batch(1..64), 3, 64, 64]"


def build_onnx(folder: Path) -> Path:
    import torch

    from tests.fixtures.export_models import cnn

    path = folder / "cnn.onnx"
    torch.onnx.export(cnn(channels=32), (torch.randn(1, 3, 64, 64),), path, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path


def bare_p50(session: object, feed: dict[str, np.ndarray], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        session.run(None, feed)  # type: ignore[attr-defined]
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, feed)  # type: ignore[attr-defined]
        times.append(time.perf_counter_ns() - start)
    return float(np.percentile(np.asarray(times) / 1e6, 50))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from core.checks.common import make_inputs
    from core.checks.latency import measure_latency
    from core.inputs import parse_specs
    from core.runtime.onnxruntime import OnnxRuntimeRunner

    with tempfile.TemporaryDirectory() as tmp:
        runner = OnnxRuntimeRunner.load(build_onnx(Path(tmp)), threads=args.threads)
        feed = make_inputs(parse_specs(SPEC), {"batch": 1}, seed=0)
        ours, bare = [], []
        for _ in range(args.rounds):
            bare.append(bare_p50(runner.session, feed, args.warmup, args.runs))
            result = measure_latency([runner], SPEC, [1], warmup=args.warmup, runs=args.runs)
            ours.append(result.runners[0].batches[0].stats.p50_ms)
    ours_p50, bare_p50_ms = statistics.median(ours), statistics.median(bare)
    print(f"onnxruntime CNN (32 channels, 1x3x64x64), {args.threads} thread(s), {args.rounds} rounds "
          f"x {args.runs} runs")
    print(f"bare session.run p50 per round (ms): {' '.join(f'{v:.4f}' for v in bare)}")
    print(f"check p50 per round (ms):            {' '.join(f'{v:.4f}' for v in ours)}")
    print(f"ratio (check p50 / bare p50): {ours_p50 / bare_p50_ms:.3f} (target 0.95..1.05)")


if __name__ == "__main__":
    main()

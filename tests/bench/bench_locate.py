"""Benchmark: locating the divergence vs one parity run. A 50-layer MLP (Linear + ReLU, width 256),
eager against its ONNX export (dynamo exporter) with one layer's weight scaled; one parity run
(the default shapes: batch 1, 16, 64) vs one `locate` (batch 1, every module's output on both
sides, the ONNX copy with its extra outputs loaded into a new session). Rounds alternate so drift
hits both alike; medians. Target: locate within 3x one parity run.

Run on demand:  python tests/bench/bench_locate.py [--rounds 3] [--layers 50] [--width 256]
The last line is the ratio (locate / parity).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def build(layers: int, width: int, folder: Path) -> tuple[object, Path]:
    """The eager MLP and its ONNX export with layer 10's weight scaled by 4."""
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn

    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(layers):
        blocks += [nn.Linear(width, width), nn.ReLU()]
        nn.init.kaiming_normal_(blocks[-2].weight)  # keeps the scale, so the damage reaches the end
    model = nn.Sequential(*blocks).eval()
    path = folder / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, width),), path, dynamo=True, input_names=["x"],
                          dynamic_shapes=({0: "batch"},), verbose=False)
    proto = onnx.load(path)
    for init in proto.graph.initializer:
        if init.name == "20.weight":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 4.0, init.name))
    onnx.save(proto, path)
    return model, path


def timed(work: object) -> tuple[float, object]:
    start = time.perf_counter()
    value = work()  # type: ignore[operator]
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()

    from core.checks.locate import locate
    from core.checks.parity import check_parity
    from core.runtime.eager import EagerRunner
    from core.runtime.onnxruntime import OnnxRuntimeRunner

    spec = f"x: float32[batch(1..64), {args.width}]"
    with tempfile.TemporaryDirectory() as tmp:
        model, path = build(args.layers, args.width, Path(tmp))
        eager, onnx_runner = EagerRunner(model), OnnxRuntimeRunner.load(path)
        check_parity(eager, onnx_runner, spec)  # warm both runtimes once, untimed
        parity_s, locate_s = [], []
        for _ in range(args.rounds):
            seconds, result = timed(lambda: check_parity(eager, onnx_runner, spec))
            parity_s.append(seconds)
            seconds, loc = timed(lambda: locate(eager, onnx_runner, spec))
            locate_s.append(seconds)
    parity_median, locate_median = statistics.median(parity_s), statistics.median(locate_s)
    print(f"{args.layers}-layer MLP (width {args.width}), eager vs ONNX, {args.rounds} rounds")
    print(f"parity (batch 1, 16, 64): median {parity_median * 1000:.1f} ms "
          f"({'pass' if result else 'FAIL'})")
    print(f"locate (batch 1, {len(loc.rows)} modules): median {locate_median * 1000:.1f} ms; "
          f"first divergence: {loc.first_divergence.module if loc.first_divergence else None}")
    print(f"ratio locate / parity: {locate_median / parity_median:.2f} (target <= 3)")


if __name__ == "__main__":
    main()

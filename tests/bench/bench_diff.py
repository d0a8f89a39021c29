"""Benchmark: `ckpt-studio diff` (structure, then --values) of two ≥ 1 GB checkpoints vs torch.load.

Run on demand from the repository root:  python tests/bench/bench_diff.py [--runs 3] [--size-gb 1.2]
A is bench_inspect's transformer-shaped fp32 file; B is A with small noise added to every tensor
(a fine-tuned copy), so the value diff takes its full path on every element. Each figure is a whole
process (interpreter start-up included), timed with perf_counter_ns, next to one process that
torch.loads both files (the time to read both once). Files are built once and cached in the temp
folder. Targets: structure <= 0.5 s; values <= 2 x the two torch.loads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_inspect import CACHE, build_checkpoint, run_process  # noqa: E402

RUNNER = """
import argparse, sys
from core.cli.main import _guarded
from core.cli.diff import add_parser
parser = argparse.ArgumentParser(prog="ckpt-studio")
parser.add_argument("-v", "--verbose", action="store_true")
add_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(["diff", *sys.argv[1:]])
code = _guarded(args.run, args)
sys.exit(0 if code in (0, 1) else code)
"""
LOAD_BOTH = "import sys, torch; [torch.load(p) for p in sys.argv[1:]]"


def build_tuned(size_gb: float) -> Path:
    """B: A with noise (std 1e-3) added to every floating tensor, saved with torch.save."""
    path = CACHE / f"big-{size_gb:g}gb-tuned.pt"
    if path.exists():
        return path
    import torch

    base = torch.load(build_checkpoint(size_gb), mmap=True, weights_only=True)
    gen = torch.Generator().manual_seed(1)
    tuned = {k: v + 1e-3 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    tmp = path.with_suffix(".partial")
    torch.save(tuned, tmp)
    os.replace(tmp, path)
    return path


def measure_interleaved(commands: dict[str, list[str]], runs: int) -> list[dict[str, float | str]]:
    """Each round runs every command once, so load from other processes hits them alike."""
    for argv in commands.values():
        run_process(argv)  # warm the page cache and the imports
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label].append(run_process(argv))
    return [{"label": label, "median_s": statistics.median(s for s, _ in got),
             "min_s": min(s for s, _ in got), "max_s": max(s for s, _ in got),
             "rss_mb": max(r for _, r in got)} for label, got in samples.items()]


def in_process_structure(a: Path, b: Path, runs: int) -> float:
    from core.diff.structure import diff_files

    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        diff_files(a, b, suggest=True)
        times.append((time.perf_counter_ns() - start) / 1e9)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-gb", type=float, default=1.2)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build_checkpoint(args.size_gb)
        build_tuned(args.size_gb)
        return
    subprocess.run([sys.executable, __file__, "--build-only", "--size-gb", str(args.size_gb)],
                   check=True)
    a, b = build_checkpoint(args.size_gb), build_tuned(args.size_gb)
    diff = [sys.executable, "-c", RUNNER, str(a), str(b), "--json"]
    rows = measure_interleaved({
        "diff (structure)": diff,
        "diff --values": [*diff, "--values"],
        "torch.load(A) + torch.load(B)": [sys.executable, "-c", LOAD_BOTH, str(a), str(b)],
    }, args.runs)
    inproc = in_process_structure(a, b, args.runs)
    sizes = f"{a.stat().st_size / 1e9:.2f} GB + {b.stat().st_size / 1e9:.2f} GB"
    print(f"files: {a.name} + {b.name} ({sizes}), {args.runs} runs each, whole processes")
    print(f"{'command':32} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['label']:32} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['rss_mb']:12.0f}")
    print(f"{'structure diff, in process':32} {inproc:9.3f}")
    structure, values, load = (float(r["median_s"]) for r in rows)
    best = float(rows[1]["min_s"]) / float(rows[2]["min_s"])
    print(f"ratio (medians): structure diff {structure:.2f} s, {load / structure:.1f}x faster than "
          f"the two torch.loads (target <= 0.5 s); value diff {values / load:.2f}x the two "
          f"torch.loads ({values:.2f} s vs {load:.2f} s; best runs {best:.2f}x; target <= 2x)")


if __name__ == "__main__":
    main()

"""Benchmark: `ckpt-studio inspect --json` on a ≥ 1 GB checkpoint vs torch.load (mmap and plain).

Run on demand:  python tests/bench/bench_inspect.py [--runs 5] [--size-gb 1.2]
Each figure is a whole process (interpreter start-up included), timed with perf_counter_ns; peak RSS
comes from wait4's rusage of that process. The file is built once and cached in the temp folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(tempfile.gettempdir()) / "ckpt-studio-bench"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def build_checkpoint(size_gb: float) -> Path:
    """A transformer-shaped fp32 state dict (~12.6M params per layer) written with torch.save."""
    path = CACHE / f"big-{size_gb:g}gb.pt"
    if path.exists():
        return path
    import torch

    CACHE.mkdir(parents=True, exist_ok=True)
    per_layer_bytes = 4 * (4 * 1024 * 1024 + 2 * 4096 * 1024 + 6 * 1024 + 4096)
    layers = max(1, int(size_gb * 1e9 / per_layer_bytes) + 1)
    gen = torch.Generator().manual_seed(0)
    sd = {"embed.weight": torch.randn(8192, 1024, generator=gen)}
    for i in range(layers):
        p = f"layers.{i}."
        for name in ("q", "k", "v", "o"):
            sd[p + f"attn.{name}.weight"] = torch.randn(1024, 1024, generator=gen)
            sd[p + f"attn.{name}.bias"] = torch.zeros(1024)
        sd[p + "mlp.up.weight"] = torch.randn(4096, 1024, generator=gen)
        sd[p + "mlp.up.bias"] = torch.zeros(4096)
        sd[p + "mlp.down.weight"] = torch.randn(1024, 4096, generator=gen)
        sd[p + "mlp.down.bias"] = torch.zeros(1024)
        sd[p + "norm.weight"] = torch.ones(1024)
    tmp = path.with_suffix(".partial")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    return path


def run_process(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one whole process."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = (time.perf_counter_ns() - start) / 1e9
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def measure(label: str, argv: list[str], runs: int) -> dict[str, float | str]:
    run_process(argv)  # warm the page cache and the interpreter's imports once
    samples = [run_process(argv) for _ in range(runs)]
    times = [s for s, _ in samples]
    return {"label": label, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "rss_mb": max(r for _, r in samples)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-gb", type=float, default=1.2)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build_checkpoint(args.size_gb)
        return
    # built in a child process: a forked child's peak RSS would include this process's memory
    subprocess.run([sys.executable, __file__, "--build-only", "--size-gb", str(args.size_gb)],
                   check=True)
    path = build_checkpoint(args.size_gb)
    size = path.stat().st_size
    cli = shutil.which("ckpt-studio") or ""
    ours = [cli, "inspect", "--json", str(path)] if cli else \
        [sys.executable, "-m", "core.cli", "inspect", "--json", str(path)]
    load = "import sys, torch; sd = torch.load(sys.argv[1], {}); print(len(sd))"
    rows = [
        measure("ckpt-studio inspect --json", ours, args.runs),
        measure("torch.load(mmap=True)", [sys.executable, "-c", load.format("mmap=True"), str(path)],
                args.runs),
        measure("torch.load", [sys.executable, "-c", load.format(""), str(path)], args.runs),
    ]
    print(f"file: {path} ({size / 1e9:.2f} GB), {args.runs} runs each, whole processes")
    print(f"{'command':32} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['label']:32} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['rss_mb']:12.0f}")
    ours_row, mmap_row, plain_row = rows
    print(f"ratio: inspect is {mmap_row['median_s'] / ours_row['median_s']:.1f}x faster than "
          f"torch.load(mmap=True) and {plain_row['median_s'] / ours_row['median_s']:.1f}x faster "
          f"than torch.load; peak RSS {ours_row['rss_mb']:.0f} MB vs {mmap_row['rss_mb']:.0f} MB "
          f"(target <= 0.3 s, <= 150 MB)")


if __name__ == "__main__":
    main()

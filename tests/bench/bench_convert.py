"""Benchmark: converting a ≥ 1 GB `.pt` to safetensors vs a durable copy and vs load+save_file.

Run on demand:  python tests/bench/bench_convert.py [--runs 3] [--size-gb 1.2]
Rounds run the three commands in turn. Each figure is a whole process (interpreter start-up
included), timed with perf_counter_ns; peak RSS from wait4's rusage. The rows, all from the
same cached source file:
- durable copy: copy the file, then fsync it (the floor for writing those bytes safely);
- ckpt-studio convert: core.convert.convert(..., "safetensors"), fsync + verification included;
- torch.load + save_file: what people do by hand (no fsync, no verification).
The last line gives our time as a multiple of the durable copy and our peak RSS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_inspect import CACHE, build_checkpoint, run_process  # noqa: E402

COPY = ("import os, shutil, sys\n"
        "shutil.copyfile(sys.argv[1], sys.argv[2])\n"
        "fd = os.open(sys.argv[2], os.O_RDONLY)\nos.fsync(fd)\nos.close(fd)\n")
OURS = ("import sys\nfrom core.convert import convert\n"
        "convert(sys.argv[1], sys.argv[2], 'safetensors', overwrite=True)\n")
LOAD_SAVE = ("import sys, torch\nfrom safetensors.torch import save_file\n"
             "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])\n")


def measure(rows: list[tuple[str, str, Path]], src: Path, runs: int) -> list[dict[str, float | str]]:
    """Rounds of every command in turn (load spikes hit all of them alike); median per command."""
    argvs = [[sys.executable, "-c", code, str(src), str(dst)] for _, code, dst in rows]
    for argv in argvs:  # warm the page cache and the imports once
        run_process(argv)
    samples: list[list[tuple[float, float]]] = [[] for _ in rows]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            Path(argv[-1]).unlink(missing_ok=True)
            samples[i].append(run_process(argv))
    out = []
    for (label, _, dst), got in zip(rows, samples, strict=True):
        dst.unlink(missing_ok=True)
        times = [s for s, _ in got]
        out.append({"label": label, "median_s": statistics.median(times), "min_s": min(times),
                    "max_s": max(times), "rss_mb": max(r for _, r in got)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-gb", type=float, default=1.2)
    args = parser.parse_args()
    src = build_checkpoint(args.size_gb)
    out = CACHE / "convert-out"
    out.mkdir(exist_ok=True)
    rows = measure([("durable copy (copy + fsync)", COPY, out / "copy.pt"),
                    ("ckpt-studio convert", OURS, out / "ours.safetensors"),
                    ("torch.load + save_file", LOAD_SAVE, out / "theirs.safetensors")],
                   src, args.runs)
    print(f"file: {src} ({src.stat().st_size / 1e9:.2f} GB), {args.runs} runs each, whole processes")
    print(f"{'command':30} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['label']:30} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
              f"{r['rss_mb']:12.0f}")
    copy, ours, theirs = rows
    print(f"ratio: convert takes {ours['median_s'] / copy['median_s']:.2f}x the durable copy "
          f"(best runs {ours['min_s'] / copy['min_s']:.2f}x; target <= 1.5x) and "
          f"{ours['median_s'] / theirs['median_s']:.2f}x torch.load+save_file; peak RSS "
          f"{ours['rss_mb']:.0f} MB (target <= 300 MB) vs {theirs['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

"""Benchmark: converting a ≥ 1 GB `.pt` vs a durable copy of it, and vs load + save_file.

Run on demand:  python tests/bench/bench_convert.py [--runs 5] [--size-gb 1.2] [--no-torch]

Every figure is one whole process (interpreter start-up included), timed with perf_counter_ns.
Peak RSS is that process's own `ru_maxrss` from `os.wait4` (one child per call, never the
accumulated RUSAGE_CHILDREN). On Linux a child's figure starts from the RSS its parent had when
it was started, so this process stays small: the source is built in a separate process, and the
floor is printed (`parent RSS`). Rounds run every command in turn, so load from other programs
hits all of them alike; the table shows medians of the rounds, and the ratios are medians over
the durable copy's median. CPU s is the median of user + system time (all threads): on a
machine shared with other work it shows what each command costs when wall times are noisy.
All rows read the same cached source file:
- durable copy: shutil.copyfile, then fsync (the floor for writing those bytes safely);
- convert: core.convert.convert(..., "safetensors"), fsync + verification + the source's BLAKE3
  (what identifies it in the output's metadata) included;
- convert sha256: the same, the source identified by its sha256 instead (`--source-sha256`);
- convert bf16: the same as convert with every float tensor cast to bfloat16 (half the bytes written);
- convert sharded: "safetensors-sharded" with 300 MB shards (5 shards + index for 1.24 GB);
- torch.load + save_file: what people do by hand (no fsync, no verification; --no-torch skips).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_inspect import CACHE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COPY = ("import os, shutil, sys\n"
        "shutil.copyfile(sys.argv[1], sys.argv[2])\n"
        "fd = os.open(sys.argv[2], os.O_RDONLY)\nos.fsync(fd)\nos.close(fd)\n")
CONVERT = ("import sys\nfrom core.convert import ConvertOptions, convert\n"
           "convert(sys.argv[1], sys.argv[2], {target!r}, ConvertOptions(dtype={dtype!r}),\n"
           "        max_shard_size={shard!r}, source_hash={hash!r})\n")
LOAD_SAVE = ("import sys, torch\nfrom safetensors.torch import save_file\n"
             "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])\n")
TARGET_RATIO = {"convert": 1.2, "convert bf16": 1.3, "convert sharded": 1.2}
TARGET_RSS_MB = 300


def rows_for(out: Path, with_torch: bool) -> list[tuple[str, str, Path]]:
    rows = [("durable copy", COPY, out / "copy.pt"),
            ("convert", convert_code("safetensors"), out / "ours.safetensors"),
            ("convert sha256", convert_code("safetensors", source_hash="sha256"),
             out / "ours-sha256.safetensors"),
            ("convert bf16", convert_code("safetensors", dtype="bf16"), out / "ours-bf16.safetensors"),
            ("convert sharded", convert_code("safetensors-sharded", shard=300 * 10**6),
             out / "ours-sharded")]
    if with_torch:
        rows.append(("torch.load + save_file", LOAD_SAVE, out / "theirs.safetensors"))
    return rows


def convert_code(target: str, dtype: str | None = None, shard: int | None = None,
                 source_hash: str = "blake3") -> str:
    return CONVERT.format(target=target, dtype=dtype, shard=shard, hash=source_hash)


def run_child(argv: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds user + system) of one process, from its own wait4."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = (time.perf_counter_ns() - start) / 1e9
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore
    proc.stderr.close()  # type: ignore[union-attr]
    proc.returncode = 0
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def measure(rows: list[tuple[str, str, Path]], src: Path, runs: int) -> list[dict[str, object]]:
    """Rounds of every command in turn; per command its times and peak RSS of each run."""
    argvs = [[sys.executable, "-c", code, str(src), str(dst)] for _, code, dst in rows]
    for argv in argvs:  # warm the page cache and the imports once
        remove(Path(argv[-1]))
        run_child(argv)
    samples: list[list[tuple[float, float, float]]] = [[] for _ in rows]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            remove(Path(argv[-1]))
            subprocess.run(["sync"], check=True)  # no writeback of the previous run left to pay
            samples[i].append(run_child(argv))
    for _, _, dst in rows:
        remove(dst)
    return [{"label": label, "times": [s[0] for s in got], "rss": [s[1] for s in got],
             "cpu": [s[2] for s in got]} for (label, _, _), got in zip(rows, samples, strict=True)]


def report(rows: list[dict[str, object]], src: Path, runs: int) -> None:
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file: {src} ({src.stat().st_size / 1e9:.2f} GB), {runs} alternated rounds, whole "
          f"processes; parent RSS {parent_mb:.0f} MB (the floor of every peak below)")
    print(f"{'command':24} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12} "
          f"{'CPU s':>6} {'x copy':>7}")
    copy = statistics.median(rows[0]["times"])  # type: ignore[arg-type]
    verdicts = []
    for r in rows:
        times, rss, cpu = r["times"], r["rss"], r["cpu"]
        median = statistics.median(times)  # type: ignore[arg-type]
        ratio = median / copy
        print(f"{r['label']:24} {median:9.3f} {min(times):7.3f} {max(times):7.3f} "  # type: ignore
              f"{max(rss):12.0f} {statistics.median(cpu):6.2f} {ratio:7.2f}")  # type: ignore
        target = TARGET_RATIO.get(str(r["label"]))
        if target is not None:
            ok = ratio <= target and max(rss) <= TARGET_RSS_MB  # type: ignore[type-var]
            verdicts.append(f"{r['label']} {ratio:.2f}x (target <= {target}x), peak "
                            f"{max(rss):.0f} MB (<= {TARGET_RSS_MB}): {'met' if ok else 'NOT met'}")
    print("ratio (median / durable copy median): " + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-gb", type=float, default=1.2)
    parser.add_argument("--no-torch", action="store_true", help="skip torch.load + save_file")
    args = parser.parse_args()
    # built in a child process: a child's peak RSS starts from this process's (see the docstring)
    build = ("import sys\nfrom tests.bench.bench_inspect import build_checkpoint\n"
             "print(build_checkpoint(float(sys.argv[1])))")
    src = Path(subprocess.run([sys.executable, "-c", build, str(args.size_gb)], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout.strip())
    out = CACHE / "convert-out"
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    rows = measure(rows_for(out, not args.no_torch), src, args.runs)
    report(rows, src, args.runs)


if __name__ == "__main__":
    main()

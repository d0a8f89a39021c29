"""Benchmark: a legitimate file holding one huge plain dict (6 million int keys, ~60 MB) opens
within 2x the time torch.load(weights_only=True) takes, and within 2x the memory it takes.

Run on demand:
    python tests/bench/bench_big_dict.py [--keys 6000000] [--rounds 3]

The file is written by a child process. Each round then opens it once with torch.load and once
with open_checkpoint, alternated, each in a fresh process that measures its own growth: the peak
RSS while loading (VmHWM, reset just before through /proc/self/clear_refs) minus the RSS just
before. (`ru_maxrss` cannot be used: Linux carries it over from the parent across exec, so the
parent's peak hid most of torch's growth.) Prints medians and ratios; exits 1 when ours is over
2x torch's time or 2x its memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, re, sys, time
sys.path.insert(0, {root!r})
import torch
from core.formats import open_checkpoint

def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\\s+(\\d+) kB", f.read()).group(1)) / 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current RSS
before = status("VmRSS")
start = time.perf_counter()
if sys.argv[1] == "torch":
    torch.load(sys.argv[2], weights_only=True)
else:
    open_checkpoint(sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps([seconds, status("VmHWM") - before]))
"""
WRITE = "import sys, torch; torch.save({{i: i for i in range({keys})}}, sys.argv[1])"


def run(which: str, path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), which, str(path)],
                         check=True, capture_output=True, text=True, timeout=1200)
    seconds, mb = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=6_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big_dict.pt"
        subprocess.run([sys.executable, "-c", WRITE.format(keys=args.keys), str(path)], check=True,
                       timeout=1200)
        print(f"{args.keys:,} keys, {path.stat().st_size / 1e6:.0f} MB")
        times: dict[str, list[float]] = {"torch": [], "ours": []}
        memory: dict[str, list[float]] = {"torch": [], "ours": []}
        for _ in range(args.rounds):
            for which in ("torch", "ours"):
                seconds, mb = run(which, path)
                times[which].append(seconds)
                memory[which].append(mb)
    t = {k: statistics.median(v) for k, v in times.items()}
    m = {k: statistics.median(v) for k, v in memory.items()}
    print(f"torch.load   {t['torch']:7.2f} s  +{m['torch']:7.0f} MB")
    print(f"open         {t['ours']:7.2f} s  +{m['ours']:7.0f} MB")
    print(f"ratio        {t['ours'] / t['torch']:7.2f} x  {m['ours'] / m['torch']:6.2f} x memory")
    return 0 if t["ours"] <= 2 * t["torch"] and m["ours"] <= 2 * m["torch"] else 1


if __name__ == "__main__":
    sys.exit(main())

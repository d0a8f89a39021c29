"""Benchmark: a ~10 GB checkpoint opened, inspected, scanned and converted in bounded memory.

Run on demand (not in CI; needs ~3x the size in free disk):
    python tests/bench/bench_scale.py [--size-gb 10] [--keep] [--with-pt] [--with-cast]

The source is a torch.save-style zip written tensor by tensor (stored records, zip64), its
data.pkl pickled from metadata alone, so building it needs no more memory than one 64 MiB block of
random bytes, reused for every record. Each step then runs in a fresh process; its peak RSS comes
from wait4's rusage. Targets: inspect <= 150 MB, convert <= 300 MB. The first rows are the
baselines measured in the same run (an empty interpreter, and one that imports the modules the
steps use), so the figures can be read as "the interpreter + what the job adds".
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 64 << 20
INSPECT_MB, CONVERT_MB = 150, 300


# ---- building the source ------------------------------------------------------------------------
class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles exactly as torch.save pickles a contiguous float32 tensor (never materialised)."""

    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self) -> tuple:
        import torch

        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.shape,
                                                  _contiguous(self.shape), False, OrderedDict())


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for dim in reversed(shape):
        stride.append(acc)
        acc *= dim
    return tuple(reversed(stride))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> tuple | None:
        import torch

        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def layout(size_gb: float) -> list[tuple[str, tuple[int, ...]]]:
    """Transformer-like float32 tensors: 256 MiB matrices plus small vectors, ~size_gb GB."""
    out: list[tuple[str, tuple[int, ...]]] = [("embed.weight", (32768, 2048))]
    total, i = 32768 * 2048 * 4, 0
    while total < size_gb * 1e9:
        out += [(f"layers.{i}.mlp.weight", (8192, 8192)), (f"layers.{i}.mlp.bias", (8192,)),
                (f"layers.{i}.norm.weight", (8192,))]
        total += (8192 * 8192 + 2 * 8192) * 4
        i += 1
    return out


def build(path: Path, size_gb: float) -> None:
    tensors = layout(size_gb)
    tree = OrderedDict((name, _Tensor(_Storage(str(k), _numel(shape)), shape))
                       for k, (name, shape) in enumerate(tensors))
    buf = _pickle(tree)
    block = os.urandom(BLOCK)
    tmp = path.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("big/data.pkl", buf)
        zf.writestr("big/byteorder", b"little")
        for k, (_, shape) in enumerate(tensors):
            with zf.open(f"big/data/{k}", "w", force_zip64=True) as out:
                left = _numel(shape) * 4
                while left:
                    n = min(left, BLOCK)
                    out.write(block[:n])
                    left -= n
        zf.writestr("big/version", b"3\n")
    os.replace(tmp, path)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _pickle(tree: OrderedDict) -> bytes:
    import io

    out = io.BytesIO()
    _Pickler(out, protocol=2).dump(tree)
    return out.getvalue()


# ---- measuring ----------------------------------------------------------------------------------
def run_step(code: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `python -c code args...` as a whole process."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = (time.perf_counter_ns() - start) / 1e9
    assert proc.stderr is not None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step failed: {code}\n{proc.stderr.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


INSPECT = ("import sys\nfrom core.formats import open_checkpoint\nfrom core.inspect import "
           "inspect_checkpoint\nfrom core.report import to_json\nfrom core.scan import scan_checkpoint\n"
           "c = open_checkpoint(sys.argv[1])\nprint(to_json(inspect_checkpoint(c)))\n"
           "print(to_json(scan_checkpoint(c)))\n")
CONVERT = ("import sys\nfrom core.convert import ConvertOptions, convert\n"
           "opts = ConvertOptions(dtype=sys.argv[4] or None)\n"
           "convert(sys.argv[1], sys.argv[2], sys.argv[3], opts, max_shard_size=2 * 10**9)\n")
IMPORTS = "import core.formats, core.inspect, core.report, core.scan, core.convert\n"


def steps(src: Path, out: Path, args: argparse.Namespace) -> list[tuple[str, str, list[str], int]]:
    """(label, code, argv, target MB) in order; outputs are deleted after the step that reads them."""
    st = str(out / "big.safetensors")
    rows = [
        ("inspect + scan torch zip", INSPECT, [str(src)], INSPECT_MB),
        ("convert zip -> safetensors", CONVERT, [str(src), st, "safetensors", ""], CONVERT_MB),
        ("inspect + scan safetensors", INSPECT, [st], INSPECT_MB),
        ("convert safetensors -> shards", CONVERT, [st, str(out / "shards"), "safetensors-sharded",
                                                    ""], CONVERT_MB),
        ("inspect + scan shard index", INSPECT, [str(out / "shards" / "model.safetensors.index.json")],
         INSPECT_MB),
    ]
    if args.with_cast:
        rows.append(("convert zip -> safetensors bf16", CONVERT,
                     [str(src), str(out / "bf16.safetensors"), "safetensors", "bf16"], CONVERT_MB))
    if args.with_pt:
        rows.append(("convert safetensors -> pt", CONVERT, [st, str(out / "big.pt"), "pt", ""],
                     CONVERT_MB))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-gb", type=float, default=10.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "ckpt-studio-scale")
    parser.add_argument("--keep", action="store_true", help="keep the source for the next run")
    parser.add_argument("--with-pt", action="store_true", help="also convert to .pt (torch.save)")
    parser.add_argument("--with-cast", action="store_true", help="also convert with a bf16 cast")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    src = args.dir / f"big-{args.size_gb:g}gb.pt"
    if args.build_only:
        build(src, args.size_gb)
        return
    if not src.exists():  # built in a child: its memory is not ours to measure
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build-only", "--size-gb", str(args.size_gb),
                        "--dir", str(args.dir)], check=True)
        print(f"built {src} in {time.perf_counter() - start:.0f} s")
    out = args.dir / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    try:
        report(src, out, args)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            src.unlink(missing_ok=True)


def report(src: Path, out: Path, args: argparse.Namespace) -> None:
    print(f"source: {src} ({src.stat().st_size / 1e9:.2f} GB, {len(layout(args.size_gb))} tensors)")
    print(f"{'step':34} {'seconds':>8} {'peak RSS MB':>12} {'target MB':>10}  verdict")
    for label, code in (("baseline: empty interpreter", "pass"),
                        ("baseline: imports only", IMPORTS),
                        ("baseline: import torch (.pt output)", "import torch")):
        seconds, rss = run_step(code)
        print(f"{label:34} {seconds:8.2f} {rss:12.0f} {'':>10}")
    worst = {}
    for label, code, argv, target in steps(src, out, args):
        seconds, rss = run_step(code, *argv)
        verdict = "ok" if rss <= target else "OVER"
        worst[label] = (rss, target)
        print(f"{label:34} {seconds:8.2f} {rss:12.0f} {target:10d}  {verdict}", flush=True)
    over = [k for k, (rss, target) in worst.items() if rss > target]
    print("all steps within their memory targets" if not over else f"over target: {over}")


if __name__ == "__main__":
    main()

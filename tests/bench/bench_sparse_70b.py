"""Benchmark: `inspect` and a structure `diff` of a 70B-class sharded safetensors checkpoint.

Run on demand:  python tests/bench/bench_sparse_70b.py [--runs 5] [--keep]

Two Llama-70B-shaped checkpoints (80 layers, hidden 8192, MLP 28672, 8 KV heads, vocab 128256,
bfloat16: ~70.6 B parameters, ~141 GB) are built as Hugging Face sharded safetensors, 30 shards +
`model.safetensors.index.json` each, the way `save_pretrained` lays them out. Every shard has a
real header; its data is a hole (the file is truncated to its full size), so the pair takes a
few MB of disk whatever its apparent size. The second checkpoint differs from the first the way
a fine-tune with a new head does (one tensor renamed, one dropped, one with another shape).
Each figure is one whole process (`python -m core.cli ...`, interpreter start-up included); peak
RSS from that process's own wait4. Rounds alternate the commands; medians are printed with the
goals (inspect <= 0.5 s and <= 100 MB, structure diff <= 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 30
LAYERS, HIDDEN, MLP, KV, VOCAB = 80, 8192, 28672, 1024, 128256
GOALS = {"inspect --json": (0.5, 100), "diff (structure)": (1.0, None)}


def llama_70b(variant: str) -> list[tuple[str, list[int]]]:
    """(name, shape) of every tensor, in save_pretrained's order; variant 'b' is the fine-tune."""
    names = [("model.embed_tokens.weight", [VOCAB, HIDDEN])]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        names += [(p + "self_attn.q_proj.weight", [HIDDEN, HIDDEN]),
                  (p + "self_attn.k_proj.weight", [KV, HIDDEN]),
                  (p + "self_attn.v_proj.weight", [KV, HIDDEN]),
                  (p + "self_attn.o_proj.weight", [HIDDEN, HIDDEN]),
                  (p + "mlp.gate_proj.weight", [MLP, HIDDEN]),
                  (p + "mlp.up_proj.weight", [MLP, HIDDEN]),
                  (p + "mlp.down_proj.weight", [HIDDEN, MLP]),
                  (p + "input_layernorm.weight", [HIDDEN]),
                  (p + "post_attention_layernorm.weight", [HIDDEN])]
    names += [("model.norm.weight", [HIDDEN]), ("lm_head.weight", [VOCAB, HIDDEN])]
    if variant == "b":  # a 2-class head, one tensor dropped, one renamed
        names = [(n, [2, HIDDEN] if n == "lm_head.weight" else s) for n, s in names
                 if n != "model.layers.79.post_attention_layernorm.weight"]
        names[2] = ("model.layers.0.self_attn.key.weight", names[2][1])
    return names


def build(folder: Path, variant: str) -> Path:
    """The sharded checkpoint in `folder` (sparse shards); returns its index file."""
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        return index_path
    folder.mkdir(parents=True, exist_ok=True)
    tensors = llama_70b(variant)
    total = sum(2 * _numel(shape) for _, shape in tensors)
    per_shard = -(-total // SHARDS)
    groups: list[list[tuple[str, list[int]]]] = [[]]
    size = 0
    for name, shape in tensors:
        if groups[-1] and size + 2 * _numel(shape) > per_shard:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += 2 * _numel(shape)
    weight_map = {}
    for i, group in enumerate(groups, 1):
        shard = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        _write_sparse_shard(folder / shard, group)
        weight_map.update(dict.fromkeys((n for n, _ in group), shard))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return index_path


def _numel(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _write_sparse_shard(path: Path, group: list[tuple[str, list[int]]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in group:
        nbytes = 2 * _numel(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)  # the data: a hole, read back as zeros


def run_child(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one process, from its own wait4."""
    start = time.perf_counter_ns()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = (time.perf_counter_ns() - start) / 1e9
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    proc.returncode = code
    if code not in (0, 1):  # diff exits 1 when the checkpoints differ
        raise SystemExit(f"{argv} failed ({code}): {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the sparse files for next time")
    args = parser.parse_args()
    base = Path(tempfile.gettempdir()) / "ckpt-studio-bench" / "sparse-70b"
    a, b = build(base / "a", "a"), build(base / "b", "b")
    apparent = sum(p.stat().st_size for p in (base / "a").iterdir())
    on_disk = sum(p.stat().st_blocks * 512 for p in base.rglob("*") if p.is_file())
    cli = [sys.executable, "-m", "core.cli"]
    commands = [("inspect --json", [*cli, "inspect", "--json", str(a)]),
                ("diff (structure)", [*cli, "diff", "--json", str(a), str(b)])]
    for _, argv in commands:
        run_child(argv)  # warm the page cache and the imports once
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in commands}
    for _ in range(args.runs):
        for label, argv in commands:
            samples[label].append(run_child(argv))
    shards = len(list((base / "a").glob("*.safetensors")))
    print(f"checkpoint: {len(llama_70b('a'))} tensors in {shards} shards, {apparent / 1e9:.0f} GB "
          f"apparent; both on disk: {on_disk / 1e6:.1f} MB; {args.runs} alternated rounds")
    print(f"{'command':20} {'median s':>9} {'min s':>7} {'max s':>7} {'peak RSS MB':>12}  goal")
    for label, got in samples.items():
        times = [s for s, _ in got]
        seconds, mb = GOALS[label]
        goal = f"<= {seconds} s" + (f", <= {mb} MB" if mb else "")
        print(f"{label:20} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f} "
              f"{max(r for _, r in got):12.0f}  {goal}")
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()

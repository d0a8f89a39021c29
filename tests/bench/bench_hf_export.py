"""Benchmark: exporting tiny Hugging Face models to ONNX with Optimum vs with ckpt-studio.

Run on demand:  python tests/bench/bench_hf_export.py [--rounds 3] [--models bert,gpt2,vit]

Optimum lives in its own virtual environment (its transformers pin differs from ours); its
`optimum-cli` is called by path: $OPTIMUM_CLI, default /work/optimum-venv/bin/optimum-cli. When it is
absent, only our side runs and the table says so.

The tiny models (BERT feature-extraction, GPT-2 causal LM without cache, ViT image classification)
are built from configs here (no downloads) with `save_pretrained`, by the Optimum environment's
transformers when it is there, so both exporters read a folder that its own transformers wrote.
Each round runs both exporters in turn as whole processes (interpreter start-up included, timed
with perf_counter_ns); the table shows medians, and the ratio is ours over Optimum's. Both artefacts
are then run in onnxruntime against the transformers eager model (our environment's
`from_pretrained` of the same folder) at several shapes with padded attention masks; the table shows
the largest absolute difference over all outputs both artefacts share, and each one's input and
output names.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OPTIMUM_CLI = Path(os.environ.get("OPTIMUM_CLI", "/work/optimum-venv/bin/optimum-cli"))
# name -> (transformers class, config class, config kwargs, our task, Optimum's task)
MODELS = {
    "bert": ("BertModel", "BertConfig", dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=128, max_position_embeddings=128),
             "feature-extraction", "feature-extraction"),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4,
             n_positions=128, bos_token_id=0, eos_token_id=1), "causal-lm", "text-generation"),
    "vit": ("ViTForImageClassification", "ViTConfig", dict(hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=128, image_size=64, patch_size=16,
            num_labels=5), "image-classification", "image-classification"),
}
BUILD = """import sys, torch, transformers
torch.manual_seed(0)
config = getattr(transformers, sys.argv[2])(**eval(sys.argv[3]))
getattr(transformers, sys.argv[1])(config).save_pretrained(sys.argv[4])
"""
SHAPES = ((2, 7), (3, 16), (1, 33))  # (batch, sequence) for text; batch for images


def build(name: str, folder: Path, python: str) -> None:
    cls, config_cls, kwargs, _, _ = MODELS[name]
    subprocess.run([python, "-c", BUILD, cls, config_cls, repr(kwargs), str(folder)], check=True,
                   capture_output=True)


def timed(argv: list[str]) -> float:
    start = time.perf_counter_ns()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    seconds = (time.perf_counter_ns() - start) / 1e9
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return seconds


def ours(name: str, folder: Path, out: Path) -> tuple[float, Path]:
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "core.cli", "export", str(folder), "--task", MODELS[name][3],
            "--to", "onnx", "--out-dir", str(out), "--name", "model"]
    return timed(argv), out / "model.onnx"


def optimum(name: str, folder: Path, out: Path) -> tuple[float, Path]:
    shutil.rmtree(out, ignore_errors=True)
    argv = [str(OPTIMUM_CLI), "export", "onnx", "-m", str(folder), "--task", MODELS[name][4],
            str(out)]
    return timed(argv), out / "model.onnx"


def cases(name: str) -> list[dict[str, np.ndarray]]:
    """Inputs at several shapes; text rows padded to different lengths (row 0 full)."""
    rng = np.random.default_rng(0)
    if name == "vit":
        size = MODELS[name][2]["image_size"]
        return [{"pixel_values": rng.standard_normal((b, 3, size, size)).astype(np.float32)}
                for b, _ in SHAPES]
    out = []
    for batch, seq in SHAPES:
        lengths = [seq] + [int(n) for n in rng.integers(1, seq + 1, batch - 1)]
        mask = (np.arange(seq)[None] < np.array(lengths)[:, None]).astype(np.int64)
        ids = rng.integers(0, 1000, (batch, seq)).astype(np.int64)
        out.append({"input_ids": ids, "attention_mask": mask,
                    "token_type_ids": np.zeros_like(ids)})
    return out


def eager(name: str, folder: Path) -> object:
    import transformers

    return getattr(transformers, MODELS[name][0]).from_pretrained(folder).eval()


def max_diff(model: object, onnx_path: Path, inputs: list[dict[str, np.ndarray]]) -> float:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    worst = 0.0
    for case in inputs:
        feed = {k: v for k, v in case.items() if k in names}
        if "position_ids" in names:  # Optimum's GPT-2 takes them; eager counts 0, 1, 2, ...
            batch, seq = case["input_ids"].shape
            feed["position_ids"] = np.tile(np.arange(seq, dtype=np.int64), (batch, 1))
        with torch.no_grad():
            kwargs = {"use_cache": False} if "GPT2" in type(model).__name__ else {}
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()
                           if k != "position_ids"}, **kwargs)
        for out_name, got in zip(outputs, session.run(None, feed), strict=True):
            if out_name in ref and ref[out_name] is not None:
                worst = max(worst, float(np.abs(ref[out_name].numpy() - got).max()))
    return worst


def io_names(onnx_path: Path) -> tuple[str, str]:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return ",".join(i.name for i in graph.input), ",".join(o.name for o in graph.output)


def bench(name: str, work: Path, rounds: int, with_optimum: bool) -> dict[str, object]:
    folder = work / name
    python = str(OPTIMUM_CLI.parent / "python") if with_optimum else sys.executable
    build(name, folder, python)
    times: dict[str, list[float]] = {"ours": [], "optimum": []}
    paths: dict[str, Path] = {}
    for _ in range(rounds):  # alternated, so load from other programs hits both alike
        for side, run in (("optimum", optimum), ("ours", ours)):
            if side == "optimum" and not with_optimum:
                continue
            seconds, paths[side] = run(name, folder, work / f"{name}-{side}")
            times[side].append(seconds)
    model, inputs = eager(name, folder), cases(name)
    row: dict[str, object] = {"model": name}
    for side, path in paths.items():
        row[f"{side}_s"] = statistics.median(times[side])
        row[f"{side}_io"] = io_names(path)
        row[f"{side}_diff"] = max_diff(model, path, inputs)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    with_optimum = OPTIMUM_CLI.is_file()
    if not with_optimum:
        print(f"Optimum is absent ({OPTIMUM_CLI} not found; set OPTIMUM_CLI): our side only.")
    with tempfile.TemporaryDirectory(prefix="bench_hf_") as tmp:
        rows = []
        for name in args.models.split(","):
            rows.append(bench(name, Path(tmp), args.rounds, with_optimum))
            print(rows[-1], flush=True)
    print(f"\nmedian of {args.rounds} rounds; shapes {SHAPES} (text rows padded); max abs diff vs "
          "transformers eager\n")
    print("| model | optimum s | ours s | ratio ours/optimum | optimum max diff | ours max diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        theirs = r.get("optimum_s")
        ratio = f"{r['ours_s'] / theirs:.2f}x" if theirs else "n/a"
        print(f"| {r['model']} | {theirs and f'{theirs:.1f}' or 'absent'} | {r['ours_s']:.1f} | "
              f"{ratio} | {_g(r.get('optimum_diff'))} | {_g(r['ours_diff'])} |")
    print("\n| model | side | inputs | outputs |\n|---|---|---|---|")
    for r in rows:
        for side in ("optimum", "ours"):
            if f"{side}_io" in r:
                inputs, outputs = r[f"{side}_io"]
                print(f"| {r['model']} | {side} | {inputs} | {outputs} |")


def _g(value: object) -> str:
    return "absent" if value is None else f"{value:.3g}"


if __name__ == "__main__":
    main()

"""`ckpt-studio --self-test`: prove an installation (above all a frozen bundle) has what it needs.

Each step imports the real libraries and does a little real work, printing one line:

1. open the bundled `resources/selftest/tiny.safetensors` with our own reader;
2. save its weights with `torch.save` and convert that `.pt` back to safetensors (both verified);
3. load the converted weights into a tiny model and export it to ONNX with the torch.export-based
   exporter (onnx + onnxscript), TorchScript and .pt2, each also quantized to int8 (onnxruntime's
   quantizer, torch.ao); every file is loaded back and run against eager PyTorch on the way;
4. run a parity check, onnxruntime against eager PyTorch, over several batch sizes;
5. build the capability report (`ckpt-studio doctor`) and hold it to what the steps above proved:
   every target and runner they used is reported available, and a frozen app, which carries no
   C++ compiler, offers neither AOTInductor nor torch.compile.

The first failure prints its plain reason and `run()` returns 1, so a hidden import that a frozen
build left out fails the self-test instead of the user's first real job.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CheckpointError

TINY_NAME = "tiny.safetensors"
SPEC = "x: float32[batch(1..16)=2, 4]"
EXPORT_TARGETS = ["onnx", "torchscript", "pt2"]  # + their int8 versions (onnxruntime, torch.ao)
USED_RUNNERS = ["eager", "onnxruntime"]  # step_parity's
NEED_COMPILER = [("aoti", "targets"), ("compiled", "runners")]
DETAIL_LINES = 12


@dataclass
class State:
    """What the steps hand on to each other."""

    work: Path
    checkpoint: Path = field(default_factory=Path)
    converted: Path = field(default_factory=Path)
    onnx: Path = field(default_factory=Path)
    model: Any = None


def resources_dir() -> Path:
    """`resources/` beside the packages: the repo's, or the one inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    base = Path(bundle) if bundle else Path(__file__).resolve().parents[1]
    return base / "resources"


def tiny_checkpoint() -> Path:
    return resources_dir() / "selftest" / TINY_NAME


def tiny_model() -> Any:
    """The module whose weights `tiny.safetensors` holds: Linear(4, 8) -> ReLU -> Linear(8, 3)."""
    from torch import nn

    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def step_versions(state: State) -> str:
    import numpy
    import onnx
    import onnxruntime
    import onnxscript
    import safetensors
    import torch

    from core import __version__

    frozen = "frozen" if getattr(sys, "frozen", False) else "not frozen"
    return (f"versions: ckpt-studio {__version__} ({frozen}), python {sys.version.split()[0]}, "
            f"torch {torch.__version__}, onnx {onnx.__version__}, onnxscript {onnxscript.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, safetensors {safetensors.__version__}, "
            f"numpy {numpy.__version__}")


def step_open(state: State) -> str:
    from core.formats import open_checkpoint

    path = tiny_checkpoint()
    if not path.is_file():
        raise CheckpointError(f"The bundled test checkpoint is missing: {path}")
    checkpoint = open_checkpoint(path)
    state.checkpoint = path
    count = len(checkpoint.sections[checkpoint.weights].tensors)
    return f"open: {path.name} read as {checkpoint.format}, {count} tensors"


def step_convert(state: State) -> str:
    import torch

    from core.convert import convert
    from core.formats import open_checkpoint

    source = open_checkpoint(state.checkpoint)
    tensors = source.sections[source.weights].tensors
    pt_path = state.work / "tiny.pt"
    torch.save({"model": {name: source.read(name) for name in tensors}}, pt_path)
    state.converted = state.work / "tiny-converted.safetensors"
    result = convert(pt_path, state.converted, "safetensors")
    return (f"convert: {pt_path.name} ({result.source_format}) -> {state.converted.name}, "
            f"{result.tensors_written} tensors, verified ({result.verification.get('method', '?')})")


def step_export(state: State) -> str:
    from core.arch import load_weights
    from core.export import ExportOptions, export
    from core.formats import open_checkpoint
    from core.inputs import parse_specs

    state.model = tiny_model()
    report = load_weights(state.model, open_checkpoint(state.converted))
    if not report.ok:
        raise CheckpointError("The converted weights did not fit the test model.", str(report.to_dict()))
    options = ExportOptions(name="tiny", onnx_exporter="dynamo", quantize="dynamic-int8")
    results = export(state.model, parse_specs(SPEC), EXPORT_TARGETS, state.work / "export", options)
    floats = [r for r in results if not r.quantized]
    onnx = next(r for r in floats if r.target == "onnx")
    state.onnx = Path(onnx.path or "")
    names = ", ".join(Path(r.path or "").name for r in results)
    worst = max(r.max_abs_diff or 0.0 for r in floats)
    return (f"export: {names}; ONNX by the {onnx.exporter} exporter (opset {onnx.opset}); "
            f"each file reloaded and run, max abs diff vs eager {worst:.2e}")


def step_parity(state: State) -> str:
    from core.checks import check_parity
    from core.runtime.eager import EagerRunner
    from core.runtime.onnxruntime import OnnxRuntimeRunner

    candidate = OnnxRuntimeRunner.load(state.onnx, threads=1)
    result = check_parity(EagerRunner(state.model, input_names=["x"]), candidate, SPEC)
    if not result:
        raise CheckpointError("onnxruntime and PyTorch disagree on the test model.",
                              "\n".join(result.failures()))
    worst = max((v for v in result.worst().values() if v is not None), default=0.0)
    return (f"parity: onnxruntime vs eager passed on {len(result.cases)} input shapes, "
            f"worst max abs diff {worst:.2e}")


def step_capabilities(state: State) -> str:
    from core.capabilities import capabilities

    report = capabilities()
    entries = {(c["name"], kind): c for kind in ("targets", "runners") for c in report[kind]}
    used = [(name, "targets") for name in EXPORT_TARGETS] + [(n, "runners") for n in USED_RUNNERS]
    denied = [f"{name} ({entries[name, kind]['reason']})" for name, kind in used
              if not entries[name, kind]["available"]]
    if denied:
        raise CheckpointError("The capability report calls unavailable what the self-test just "
                              f"used: {'; '.join(denied)}")
    offered = [name for name, kind in NEED_COMPILER if entries[name, kind]["available"]]
    if getattr(sys, "frozen", False) and offered:
        raise CheckpointError("The capability report offers what needs a C++ compiler, which the "
                              f"installed app does not carry: {', '.join(offered)}")
    ready = [c["name"] for c in report["targets"] if c["available"]]
    missing = [c["name"] for c in report["targets"] if not c["available"]]
    return (f"capabilities: export targets here: {', '.join(ready)}; not here: "
            f"{', '.join(missing) or 'none'} (ckpt-studio doctor says why)")


STEPS: list[tuple[str, Callable[[State], str]]] = [
    ("versions", step_versions), ("open", step_open), ("convert", step_convert),
    ("export", step_export), ("parity", step_parity), ("capabilities", step_capabilities)]


def run() -> int:
    """Run every step, one line each; 0 when all passed, 1 at the first failure."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ckpt-studio-selftest-") as work:
        state = State(Path(work))
        for name, step in STEPS:
            try:
                print(step(state), flush=True)
            except Exception as exc:  # any failure, an ImportError above all, is the answer
                _print_failure(name, exc)
                return 1
    print(f"self-test passed in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _print_failure(name: str, exc: BaseException) -> None:
    if isinstance(exc, CheckpointError):
        reason, details = exc.message, exc.details
    else:
        reason, details = f"{type(exc).__name__}: {exc}", None
    print(f"self-test FAILED at '{name}': {reason}", file=sys.stderr, flush=True)
    if details:
        lines = details.strip().splitlines()
        print("\n".join(lines[-DETAIL_LINES:]), file=sys.stderr, flush=True)

"""Runners: one per backend, one small interface (`run(inputs) -> outputs`, `name`, `device`,
`load_seconds`, `input_names`, `output_names`). `build_runner` picks the backend from the file's
content (never its extension), or builds an nn.Module from an architecture source (+ checkpoint).

TorchScript and .pt2 files are code: they load only with `trust=True`. Torch and onnxruntime are
imported inside the functions that need them.

A Hugging Face folder (config.json) runs as the transformers model the export builds from it
(core.hf.model): the task's inputs and the model's output names, its weights from the folder (or
`checkpoint`); `kwargs` may set {"task": ..., "pooling": true}. Its `input_specs` (vocab range,
padded attention mask) are what the parity check makes inputs from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from core.errors import Cancelled, CheckFailed, CheckpointError, ExportError
from core.runtime.base import Runner

__all__ = ["Runner", "build_runner", "BACKENDS"]

BACKENDS = ("eager", "compiled", "torchscript", "pt2", "aoti", "onnxruntime", "executorch")


def build_runner(source: str | Path, trust: bool = False, *, checkpoint: str | Path | None = None,
                 kwargs: dict[str, Any] | None = None, compiled: bool = False, device: str = "cpu",
                 threads: int | None = None, providers: list[str] | None = None,
                 input_dtypes: dict[str, str] | None = None,
                 search_path: str | Path | None = None) -> Runner:
    """A runner for `source`: an ONNX / TorchScript / .pt2 / pickled-module file (sniffed by content),
    or an architecture source ('pkg.mod:build', 'file.py:build', a Hugging Face folder) with the
    weights of `checkpoint` loaded into it. Every failure is a CheckFailed with a plain message."""
    try:
        path = Path(source)
        if checkpoint is None and path.is_file():
            return _from_file(path, trust, device, threads, providers, input_dtypes)
        if checkpoint is None and not path.is_dir() and ":" not in str(source):
            raise CheckFailed(f"The file '{source}' does not exist.")
        _set_torch_threads(threads)
        return _from_architecture(str(source), checkpoint, kwargs, trust, compiled, device,
                                  input_dtypes, search_path)
    except (CheckFailed, Cancelled):
        raise
    except CheckpointError as exc:
        raise CheckFailed(exc.message, exc.details) from None


def _from_file(path: Path, trust: bool, device: str, threads: int | None,
               providers: list[str] | None, input_dtypes: dict[str, str] | None) -> Runner:
    from core.formats import open_checkpoint
    from core.runtime import aoti, executorch

    if aoti.sniff(path):  # compiled packages, which the checkpoint readers don't open
        _set_torch_threads(threads)
        return aoti.AotiRunner.load(path, trust, input_dtypes=input_dtypes, device=device)
    if executorch.sniff(path):
        return executorch.ExecuTorchRunner.load(path, device)
    fmt = open_checkpoint(path).format  # sniffs the content; refuses unsafe ONNX external data
    torch_kwargs = {"input_dtypes": input_dtypes, "device": device}
    if fmt == "onnx":
        from core.runtime.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner.load(path, device, providers, threads)
    _set_torch_threads(threads)
    if fmt == "torchscript":
        from core.runtime.torchscript import TorchScriptRunner

        return TorchScriptRunner.load(path, trust, **torch_kwargs)
    if fmt == "pt2":
        from core.runtime.pt2 import Pt2Runner

        return Pt2Runner.load(path, trust, **torch_kwargs)
    import torch  # noqa: F401 - imported before the clock starts

    from core.arch import load_program
    from core.runtime.eager import EagerRunner

    start = time.perf_counter_ns()
    module = load_program(path, trust=trust)  # a pickled nn.Module; refuses weights-only files
    return EagerRunner(module, f"eager ({path.name})", source=str(path),
                       load_seconds=(time.perf_counter_ns() - start) / 1e9, **torch_kwargs)


def _from_architecture(source: str, checkpoint: str | Path | None, kwargs: dict[str, Any] | None,
                       trust: bool, compiled: bool, device: str,
                       input_dtypes: dict[str, str] | None,
                       search_path: str | Path | None) -> Runner:
    import torch  # noqa: F401 - imported before the clock starts: load time is the model's own

    from core.build import build_model

    if Path(source).is_dir() and (Path(source) / "config.json").is_file():
        return _from_hf_folder(Path(source), checkpoint, kwargs, device)
    start = time.perf_counter_ns()
    try:
        module, _ = build_model(source, checkpoint, kwargs=kwargs, trust=trust,
                                search_path=search_path)
    except ExportError as error:  # a weights report that does not fit, as a check failure
        raise CheckFailed(error.message, error.details) from None
    label = Path(source.rpartition(":")[2] or source).name
    if checkpoint is not None:
        label += f" + {Path(checkpoint).name}"
    seconds = (time.perf_counter_ns() - start) / 1e9
    common = {"source": source, "load_seconds": seconds, "input_dtypes": input_dtypes,
              "device": device}
    if compiled:
        from core.runtime.compiled import CompiledRunner

        return CompiledRunner(module, f"compiled ({label})", **common)
    from core.runtime.eager import EagerRunner

    return EagerRunner(module, f"eager ({label})", **common)


def _from_hf_folder(folder: Path, checkpoint: str | Path | None, kwargs: dict[str, Any] | None,
                    device: str) -> Runner:
    import torch  # noqa: F401 - imported before the clock starts

    from core.hf.model import load_hf_model
    from core.runtime.eager import EagerRunner

    options = dict(kwargs or {})
    unknown = sorted(set(options) - {"task", "pooling"})
    if unknown:
        raise CheckFailed(f"A Hugging Face folder takes only 'task' and 'pooling' as --kwargs, not "
                          f"'{unknown[0]}'.")
    start = time.perf_counter_ns()
    try:
        hf = load_hf_model(folder, options.get("task"), pooling=bool(options.get("pooling")),
                           weights=checkpoint)
    except ExportError as error:
        raise CheckFailed(error.message, error.details) from None
    runner = EagerRunner(hf.module, f"eager ({hf.model_class}, {hf.task})", source=str(folder),
                         load_seconds=(time.perf_counter_ns() - start) / 1e9, device=device,
                         input_names=[s.name for s in hf.specs], output_names=hf.output_names)
    runner.input_specs = hf.specs  # type: ignore[attr-defined]  # core.checks.common reads them
    return runner


def _set_torch_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

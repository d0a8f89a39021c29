"""TorchScript: torch.jit.trace (default) or torch.jit.script, saved with torch.jit.save and checked
with torch.jit.load against eager. A trace records one path through Python control flow, so it is
also compared at a second input shape, and the tracer's own warnings are passed on."""

from __future__ import annotations

import time
from typing import Any

from core.errors import ExportError
from core.export.common import (
    ExportResult,
    Job,
    check_close,
    dynamic_dims_of,
    failure,
    finished,
    frozen_warning,
    quiet,
    run_eager,
    staged,
)
from core.export.preprocess import extra_files

NAME = "torchscript"
STAGES = 2
MODES = ("trace", "script")


def export(job: Job, model: Any = None, quantized: str | None = None) -> ExportResult:
    """Export `model` (default: the job's); `quantized` names a quantized model's scheme."""
    import torch

    start = time.perf_counter()
    model = job.model if model is None else model
    mode = job.options.torchscript_mode
    if mode not in MODES:
        raise ExportError(f"'{mode}' is not a TorchScript mode; use trace or script.")
    final = f"{job.options.name}{'.int8' if quantized else ''}.torchscript.pt"
    expected = run_eager(model, job.args) if quantized else job.expected
    result = ExportResult(NAME, None, exporter=mode, input_names=[s.name for s in job.specs],
                          output_names=job.output_names(len(expected)),
                          dynamic_dims=dynamic_dims_of(job.specs), quantized=quantized,
                          reference="eager-int8" if quantized else "eager")
    with staged(job, [final]) as tmp:
        job.stage(f"{'tracing' if mode == 'trace' else 'scripting'} the model")
        program = _convert(model, job, mode, result)
        try:
            with quiet():
                torch.jit.save(program, str(tmp / final),
                               _extra_files=extra_files(job.options.preprocess))
        except Exception as exc:
            raise failure("Saving the TorchScript model failed.", exc) from None
        job.stage("loading the TorchScript model back")
        with quiet():
            loaded = torch.jit.load(str(tmp / final), map_location="cpu")
        result.max_abs_diff = check_close(job, expected, run_eager(loaded, job.args),
                                          "TorchScript model")
        if result.exporter == "trace":
            result.warnings += frozen_warning(job, model, lambda i: run_eager(
                loaded, tuple(i.values())), "traced TorchScript model")
    if quantized:
        result.quantization_error = check_float(job, expected)
    return finished(job, result, [final], start)


def _convert(model: Any, job: Job, mode: str, result: ExportResult) -> Any:
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        result.exporter = "script"  # already TorchScript (e.g. loaded from a TorchScript file)
        return model
    with quiet() as captured:
        try:
            if mode == "script":
                return torch.jit.script(model)
            program = torch.jit.trace(model, job.args, check_trace=False, strict=False)
        except Exception as exc:
            other = "script" if mode == "trace" else "trace"
            raise failure(f"torch.jit.{mode} failed on this model; try the other TorchScript mode "
                          f"({other}) or another target.", exc, captured) from None
    tracer = captured.tracer_warnings()
    if tracer:
        result.warnings.append("Tracing recorded only the example input's path through code that "
                               f"depends on the input values ({tracer[0]}); check other inputs or "
                               "export with script mode.")
    return program


def train_mode_warning(model: Any) -> list[str]:
    """A warning when the model (or a BatchNorm/Dropout in it) is in training mode."""
    import torch
    from torch import nn

    if isinstance(model, torch.jit.ScriptModule):
        return []
    kinds = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
    training = sorted({type(m).__name__ for m in model.modules() if m.training
                       and isinstance(m, kinds)})
    if not training and not model.training:
        return []
    which = f" ({', '.join(training)} behave differently there)" if training else ""
    return [f"The model is in training mode{which}; the export records training behaviour. "
            "Call model.eval() before exporting."]


def check_float(job: Job, got: list[Any]) -> float:
    from core.export.common import max_abs_diff

    return max_abs_diff(job.expected, got, "quantized model")

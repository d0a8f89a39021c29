"""Export a model to deployable files: one module per target, registered in `TARGETS`.

    results = export(model, specs, ["onnx", "torchscript", "pt2"], out_dir, ExportOptions(...))

Each target writes into the run's private temp folder inside `out_dir`, loads its artefact back with
the real runtime (onnxruntime / torch.jit.load / torch.export.load) and compares it with the model in
eager mode on the example inputs made from `specs`. The artefacts move into place together when the
run ends; on an error or a cancel nothing of the run is left. A target module has `NAME`, `STAGES`
(progress steps) and `export(job) -> ExportResult`; adding one is a new file plus one line in
`TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.export import aoti, executorch, onnx, pt2, quantize, torchscript
from core.export.common import ExportOptions, ExportResult, Job, failure, publishing, run_eager
from core.export.preprocess import prepare
from core.inputs import InputSpec, example_inputs, format_specs
from core.progress import Progress, step

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["TARGETS", "ExportOptions", "ExportResult", "export"]

Step = tuple[str, Callable[[Job], ExportResult], str | None, int]  # target, run, quantized, stages

TARGETS: dict[str, ModuleType] = {"onnx": onnx, "torchscript": torchscript, "pt2": pt2,
                                   "aoti": aoti, "executorch": executorch}
QUANTIZED: dict[str, Callable[[Job], ExportResult]] = {
    "torchscript": quantize.export_torchscript, "onnx": quantize.export_onnx}


def export(model: nn.Module, specs: list[InputSpec], targets: Sequence[str],
           out_dir: str | Path, options: ExportOptions | None = None,
           progress: Progress | None = None) -> list[ExportResult]:
    """Export `model` (inputs described by `specs`, passed positionally) to each target in order,
    then the quantized artefacts when `options.quantize` is set. Raises ExportError on the first
    failure unless `options.keep_going`, which turns failures into results with `error` set."""
    options = options or ExportOptions()
    model, specs, recorded = prepare(model, specs, options.preprocess, options.bake_preprocess)
    options = replace(options, preprocess=recorded)
    plan = _plan(list(targets), options)
    job = Job(model, specs, Path(out_dir), options, progress,
              total=1 + sum(stages for _, _, _, stages in plan))
    created = _make_folder(job.out_dir)
    try:
        with publishing(job):
            return _run(job, plan)
    finally:
        if created and not any(job.out_dir.iterdir()):
            job.out_dir.rmdir()  # a run that wrote nothing leaves no empty folder behind


def _run(job: Job, plan: list[Step]) -> list[ExportResult]:
    job.stage("running the model on the example input")
    job.inputs = example_inputs(job.specs, seed=job.options.seed)
    job.expected = _eager(job.model, job)
    warnings = torchscript.train_mode_warning(job.model)
    results = []
    for name, run, quantized, stages in plan:
        done = job.done + stages
        try:
            result = run(job)
        except ExportError as exc:
            if not job.options.keep_going:
                raise
            result = ExportResult(name, None, quantized=quantized,
                                  error={"message": exc.message, "details": exc.details})
        result.warnings[:0] = warnings
        result.preprocess = _preprocess_record(job)
        results.append(result)
        job.done = done
        step(job.progress, done, job.total, f"{name} done")
    return results


def _preprocess_record(job: Job) -> dict[str, Any] | None:
    spec = job.options.preprocess
    if spec is None:
        return None
    return spec.to_dict() | ({"raw_inputs": format_specs(job.specs)} if spec.baked else {})


def _make_folder(out_dir: Path) -> bool:
    """Create the output folder when missing; True when this run created it."""
    if out_dir.is_dir():
        return False
    try:
        out_dir.mkdir(parents=True)
    except OSError as exc:
        raise ExportError(f"The output folder '{out_dir}' could not be created.", str(exc)) from None
    return True


def _plan(targets: list[str], options: ExportOptions) -> list[Step]:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ExportError(f"'{', '.join(unknown) or 'nothing'}' is not an export target; choose "
                          f"from {', '.join(TARGETS)}.")
    plan = [(t, TARGETS[t].export, None, TARGETS[t].STAGES) for t in dict.fromkeys(targets)]
    if options.quantize is None:
        return plan
    if options.quantize not in quantize.SCHEMES:
        raise ExportError(f"'{options.quantize}' is not a quantization; use "
                          f"{', '.join(quantize.SCHEMES)}.")
    extra = [(t, QUANTIZED[t], options.quantize, quantize.STAGES) for t in dict.fromkeys(targets)
             if t in QUANTIZED]
    if not extra:
        raise ExportError("Quantization applies to the TorchScript and ONNX targets; add one of "
                          "them.")
    return plan + extra


def _eager(model: Any, job: Job) -> list[Any]:
    try:
        outputs = run_eager(model, job.args)
    except Exception as exc:
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300].rstrip(".")
        raise failure("The model could not run on example inputs made from the input spec "
                      f"({format_specs(job.specs)}): {cause}. Check the spec.", exc) from None
    if not outputs or not all(hasattr(t, "shape") for t in outputs):
        raise ExportError("The model's output is not a tensor or a tuple/list/dict of tensors, "
                          "which the export targets need.")
    return outputs

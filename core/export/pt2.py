""".pt2: torch.export.export with Dims from the input spec, torch.export.save, and a check with
torch.export.load against eager."""

from __future__ import annotations

import time
from typing import Any

from core.errors import ExportError
from core.export.common import (
    ExportResult,
    Job,
    check_close,
    dim_problem,
    dynamic_dims_of,
    failure,
    finished,
    quiet,
    run_eager,
    staged,
)
from core.export.preprocess import extra_files
from core.inputs import to_dynamic_shapes

NAME = "pt2"
STAGES = 2
DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "data-dependent", "DataDependent")


def export(job: Job) -> ExportResult:
    import torch

    start = time.perf_counter()
    final = f"{job.options.name}.pt2"
    result = ExportResult(NAME, None, exporter="export", input_names=[s.name for s in job.specs],
                          output_names=job.output_names(len(job.expected)),
                          dynamic_dims=dynamic_dims_of(job.specs))
    with staged(job, [final]) as tmp:
        job.stage("exporting with torch.export")
        program = exported_program(job)
        try:
            with quiet():
                torch.export.save(program, str(tmp / final),
                                  extra_files=extra_files(job.options.preprocess))
        except Exception as exc:
            raise failure("Saving the .pt2 program failed.", exc) from None
        job.stage("loading the .pt2 program back")
        with quiet():
            loaded = torch.export.load(str(tmp / final)).module()
        result.max_abs_diff = check_close(job, job.expected, run_eager(loaded, job.args),
                                          ".pt2 program")
    return finished(job, result, [final], start)


def exported_program(job: Job) -> Any:
    """torch.export.export of the job's model with Dims from the spec; made once per job."""
    if job.program is None and job.program_error is None:
        try:
            job.program = _export(job)
        except ExportError as exc:
            job.program_error = exc
    if job.program_error is not None:
        raise job.program_error
    return job.program


def _export(job: Job) -> Any:
    import torch

    shapes = tuple(to_dynamic_shapes(job.specs).values())
    with quiet() as captured:
        try:
            return torch.export.export(job.model, job.args, dynamic_shapes=shapes)
        except Exception as exc:
            error = exc
    problem = dim_problem(error)
    if problem is not None:
        raise problem
    text = f"{type(error).__name__}: {error}"
    if any(word in text for word in DATA_DEPENDENT):
        raise failure("torch.export cannot export this model: it has control flow that depends on "
                      "tensor values (rewrite it with torch.cond, or choose TorchScript script "
                      "mode or ONNX).", error, captured)
    raise failure("torch.export failed on this model.", error, captured)

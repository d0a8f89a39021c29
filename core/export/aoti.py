""".aoti.pt2: torch.export with Dims from the input spec, compiled ahead of time by AOTInductor
(torch._inductor.aoti_compile_and_package) into a package of machine code for this CPU, loaded back
with aoti_load_package and compared with eager at the example shape and at a second shape.

Compiling needs a C++ compiler; without one the target refuses with one sentence. The input and
output names go into the package's metadata, so the runner can name them.
"""

from __future__ import annotations

import json
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
    quiet,
    run_eager,
    staged,
    verify_other_shape,
)
from core.export.pt2 import exported_program

NAME = "aoti"
STAGES = 3
SUFFIX = ".aoti.pt2"  # aoti_compile_and_package insists on a name ending in .pt2
NAMES_KEY = "checkpoint_studio.names"  # package metadata: {"inputs": [...], "outputs": [...]}


def export(job: Job) -> ExportResult:
    from core.capabilities import aoti_runtime_problem, compiler_problem

    problem = compiler_problem()
    if problem:
        raise ExportError(f"The AOTInductor target needs a C++ compiler, but {problem}; choose the "
                          "pt2 or onnx target instead.")
    problem = aoti_runtime_problem(probe=False)  # checked before minutes of compiling, not after
    if problem:
        raise ExportError(f"The AOTInductor target cannot check its package here: {problem}.")
    start = time.perf_counter()
    final = f"{job.options.name}{SUFFIX}"
    names = {"inputs": [s.name for s in job.specs], "outputs": job.output_names(len(job.expected))}
    result = ExportResult(NAME, None, exporter="aoti", input_names=names["inputs"],
                          output_names=names["outputs"], dynamic_dims=dynamic_dims_of(job.specs))
    with staged(job, [final]) as tmp:
        job.stage("exporting with torch.export")
        program = exported_program(job)
        job.stage("compiling with AOTInductor (C++)")
        _compile(program, str(tmp / final), names)
        job.stage("loading the AOTInductor package back")
        compiled = _load(str(tmp / final))
        result.max_abs_diff = check_close(job, job.expected, run_eager(compiled, job.args),
                                          "AOTInductor package")
        other = verify_other_shape(job, lambda inputs: run_eager(compiled, tuple(inputs.values())),
                                   "AOTInductor package")
        result.checked_shapes += [other] if other else []
    return finished(job, result, [final], start)


def _compile(program: Any, path: str, names: dict[str, list[str]]) -> None:
    import torch

    configs = {"aot_inductor.metadata": {NAMES_KEY: json.dumps(names)}}
    with quiet() as captured:
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=path,
                                                     inductor_configs=configs)
            return
        except Exception as exc:
            error = exc
    raise failure("AOTInductor could not compile this model.", error, captured)


def _load(path: str) -> Any:
    import torch

    with quiet() as captured:
        try:
            return torch._inductor.aoti_load_package(path)
        except Exception as exc:
            error = exc
    raise failure("The compiled AOTInductor package could not be loaded back.", error, captured)

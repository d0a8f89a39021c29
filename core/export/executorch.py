""".pte: torch.export with Dims from the input spec, lowered for ExecuTorch with the XNNPACK
partitioner (executorch.exir.to_edge_transform_and_lower), saved as a .pte program, loaded back with
executorch.runtime and compared with eager at the example shape and at a second shape.

ExecuTorch plans memory for the largest input, so every dynamic dim needs an upper bound (the spec's
range gives it). Without a working executorch package the target refuses with one sentence.
"""

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
    quiet,
    staged,
    verify_other_shape,
)
from core.export.pt2 import exported_program

NAME = "executorch"
STAGES = 3


def export(job: Job) -> ExportResult:
    from core.capabilities import executorch_problem

    problem = executorch_problem()
    if problem:
        raise ExportError(f"The ExecuTorch target cannot run here: {problem}.")
    unbounded = [f"{s.name}[{i}]" for s in job.specs for i, d in enumerate(s.dims)
                 if d.is_dynamic and d.max is None]
    if unbounded:
        raise ExportError(f"ExecuTorch needs an upper bound for every dynamic dim, and "
                          f"{', '.join(unbounded)} has none; give a range in the input spec, e.g. "
                          "batch(1..64).")
    start = time.perf_counter()
    final = f"{job.options.name}.pte"
    result = ExportResult(NAME, None, exporter="xnnpack", input_names=[s.name for s in job.specs],
                          output_names=job.output_names(len(job.expected)),
                          dynamic_dims=dynamic_dims_of(job.specs))
    with staged(job, [final]) as tmp:
        job.stage("exporting with torch.export")
        program = exported_program(job)
        job.stage("lowering for ExecuTorch (XNNPACK)")
        (tmp / final).write_bytes(_lower(program))
        job.stage("loading the .pte program back")
        method = _load(str(tmp / final))
        _check_planned_bounds(method, job)
        result.max_abs_diff = check_close(job, job.expected, run_method(method, job.args),
                                          ".pte program")
        other = verify_other_shape(job, lambda inputs: run_method(method, tuple(inputs.values())),
                                   ".pte program")
        result.checked_shapes += [other] if other else []
    return finished(job, result, [final], start)


def _lower(program: Any) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torch.fx.experimental import _config as shape_config

    # Lowering re-runs the graph on fake tensors (XNNPACK's channels-last pass, the delegate calls
    # in to_executorch). PyTorch's fake convolution then asks `batch >= 16` to pick a CPU backend
    # (a guard_or_false: either answer is correct) and, answered from the example batch, leaves a
    # guard `batch < 16` on the program's shapes; memory planning would then size every buffer for
    # a batch of 15. Backed-size-oblivious mode answers such questions without a guard; branches
    # that do depend on a size still guard, and _check_planned_bounds catches any bound they cut.
    with quiet() as captured, shape_config.patch(backed_size_oblivious=True):
        try:
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            return bytes(edge.to_executorch().buffer)
        except Exception as exc:
            error = exc
    raise failure("ExecuTorch could not lower this model (some of its operations may have no "
                  "ExecuTorch kernel).", error, captured)


def _load(path: str) -> Any:
    from core.runtime.executorch import load_method

    with quiet() as captured:
        try:
            return load_method(path)
        except Exception as exc:
            error = exc
    raise failure("The .pte program could not be loaded back.", error, captured)


def _check_planned_bounds(method: Any, job: Job) -> None:
    """ExecuTorch sizes its buffers from the bounds it derives; each must cover the spec's range."""
    for index, spec in enumerate(job.specs):
        planned = tuple(method.metadata.input_tensor_meta(index).sizes())
        for axis, dim in enumerate(spec.dims):
            if dim.is_dynamic and dim.max is not None and planned[axis] < dim.max:
                raise ExportError(
                    f"ExecuTorch planned memory for '{dim.name or axis}' of {spec.name} only up to "
                    f"{planned[axis]}, not the {dim.max} the input spec allows (lowering found "
                    f"code that depends on that size); narrow the range to at most {planned[axis]} "
                    "or choose another target.")


def run_method(method: Any, args: tuple[Any, ...]) -> list[Any]:
    """Run the loaded program; its runtime errors become an ExportError."""
    try:
        return [t.clone() for t in method.execute([a.contiguous() for a in args])]
    except Exception as exc:
        shapes = ", ".join(str(list(a.shape)) for a in args)
        raise failure(f"The .pte program failed to run on inputs of shape {shapes}.", exc) from None

"""ONNX: torch.onnx.export with dynamo (dynamic_shapes from the spec), the legacy TorchScript-based
exporter (dynamic_axes) when dynamo fails, onnx.checker, optional onnxruntime optimisation, and a
check with onnxruntime against eager before the file is moved into place."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from core.errors import ExportError
from core.export.common import (
    DimRangeError,
    ExportResult,
    Job,
    check_close,
    dynamic_dims_of,
    failure,
    finished,
    frozen_warning,
    quiet,
    shapes_label,
    staged,
    verify_other_shape,
)
from core.export.preprocess import record_onnx
from core.export.pt2 import exported_program
from core.inputs import to_dynamic_axes

NAME = "onnx"
STAGES = 4
LARGE = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GB limit, with room for the graph
LEGACY_MAX_OPSET = 20
TRACED_MAYBE_WRONG = "results for other inputs may be wrong."
TRACED_CHECKED = "it gave the model's results at a second input shape too."


def export(job: Job) -> ExportResult:
    start = time.perf_counter()
    final = f"{job.options.name}.onnx"
    result = ExportResult(NAME, None, input_names=[s.name for s in job.specs],
                          output_names=job.output_names(len(job.expected)),
                          dynamic_dims=dynamic_dims_of(job.specs))
    with staged(job, [final, final + ".data"]) as tmp:
        path = tmp / final
        job.stage("exporting to ONNX")
        _export(job, path, result)
        job.stage("checking the ONNX model")
        result.opset = check_file(path)
        result.warnings += _static_dims(path, job)
        if job.options.ort_optimize:
            result.warnings += _optimize(path)
        record_onnx(path, job.options.preprocess)
        job.stage("running the ONNX model in onnxruntime")
        session = open_session(path)
        got = run_session(session, job.inputs)
        result.max_abs_diff = check_close(job, job.expected, got, "ONNX model")
        result.checked_shapes.append({"inputs": shapes_label(job.inputs),
                                      "max_abs_diff": result.max_abs_diff})
        job.onnx_path = path
        run = lambda inputs: run_session(session, inputs)  # noqa: E731
        if result.exporter == "legacy" and not job.options.check_shapes:
            result.warnings += frozen_warning(job, job.model, run, "ONNX model")
        elif job.specs and any(d.is_dynamic for s in job.specs for d in s.dims):
            second = verify_other_shape(job, run, "ONNX model")
            if second is not None:
                result.checked_shapes.append(second)
                result.warnings = [w.replace(TRACED_MAYBE_WRONG, TRACED_CHECKED)
                                   for w in result.warnings]
    return finished(job, result, [final, final + ".data"], start)


def _export(job: Job, path: Path, result: ExportResult) -> None:
    how = job.options.onnx_exporter
    if how not in ("auto", "dynamo", "legacy"):
        raise ExportError(f"'{how}' is not an ONNX exporter; use auto, dynamo or legacy.")
    if how != "legacy":
        try:
            _dynamo(job, path, result)
            result.exporter = "dynamo"
            return
        except DimRangeError:
            raise  # the spec is wrong; the legacy exporter would only hide it
        except ExportError as exc:
            if how == "dynamo":
                raise
            result.fallback_reason = _first(exc.details) or exc.message
        result.warnings.append("The torch.export-based ONNX exporter could not handle this model "
                               f"({result.fallback_reason}), so the legacy TorchScript-based "
                               "exporter was used.")
    _legacy(job, path, result)
    result.exporter = "legacy"


def _dynamo(job: Job, path: Path, result: ExportResult) -> None:
    """torch.export with our Dims first (torch.onnx would quietly narrow a range that does not
    fit), then the ExportedProgram to ONNX."""
    import torch

    program = exported_program(job)
    try:
        with quiet():
            onnx_program = torch.onnx.export(
                program, job.args, None, dynamo=True, verbose=False,
                input_names=result.input_names, output_names=result.output_names,
                opset_version=job.options.opset)
            onnx_program.save(str(path), external_data=_weights_bytes(job.model) > LARGE)
    except Exception as exc:
        raise failure("The torch.export-based ONNX exporter failed on this model.", exc) from None
    _name_dims(path, job)


def _first(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else ""


def _name_dims(path: Path, job: Job) -> None:
    """Give the graph's dynamic dims the spec's names (torch.export calls them s0, s77, ...)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
    rename = {}
    for spec in job.specs:
        for axis, dim in enumerate(spec.dims):
            dims = shapes.get(spec.name)
            if dim.is_dynamic and dims is not None and axis < len(dims) and dims[axis].dim_param:
                rename[dims[axis].dim_param] = dim.name
    rename = {k: v for k, v in rename.items() if k != v}
    if not rename:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, rename)) + r")\b")
    graph = model.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: rename[m.group(1)], dim.dim_param)
    onnx.save_model(model, str(path))  # external data references are kept as they are


def _legacy(job: Job, path: Path, result: ExportResult) -> None:
    import torch

    opset = job.options.opset
    if opset is not None and opset > LEGACY_MAX_OPSET:
        raise ExportError(f"The legacy ONNX exporter supports opset {LEGACY_MAX_OPSET} at most, "
                          f"not {opset}; choose a lower opset.", result.fallback_reason)
    with quiet() as captured:
        try:
            torch.onnx.export(job.model, job.args, str(path), dynamo=False,
                              input_names=result.input_names, output_names=result.output_names,
                              opset_version=opset, dynamic_axes=to_dynamic_axes(job.specs))
        except Exception as exc:
            before = f" (after the torch.export-based one: {result.fallback_reason})" \
                if result.fallback_reason else ""
            raise failure(f"The ONNX export failed{before}.", exc, captured) from None
    if any(p != path for p in path.parent.iterdir()):
        one_data_file(path)
    tracer = captured.tracer_warnings()
    if tracer:
        result.warnings.append("The legacy exporter traced the model and recorded only the example "
                               f"input's path through code that depends on the input values "
                               f"({tracer[0]}); {TRACED_MAYBE_WRONG}")


def one_data_file(path: Path, size_threshold: int = 1024) -> None:
    """Gather external data written one file per tensor (the legacy exporter past 2 GB) into
    `<name>.data` beside the model; `path` is alone in its private temp folder."""
    import onnx

    others = [p for p in path.parent.iterdir() if p != path]
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=size_threshold)
    for other in others:
        if other.name != path.name + ".data":
            other.unlink()


def _weights_bytes(model: Any) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_file(path: Path) -> int | None:
    import onnx

    try:
        onnx.checker.check_model(str(path))  # by path: works past 2 GB with external data
    except Exception as exc:
        raise failure("The exported ONNX model did not pass onnx.checker.", exc) from None
    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _static_dims(path: Path, job: Job) -> list[str]:
    """Warn when a dim the spec made dynamic came out fixed in the graph's inputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: i.type.tensor_type.shape.dim for i in graph.input}
    out = []
    for spec in job.specs:
        dims = shapes.get(spec.name)
        for axis, dim in enumerate(spec.dims):
            if dims is not None and dim.is_dynamic and axis < len(dims) \
                    and not dims[axis].dim_param:
                out.append(f"The ONNX graph fixed '{dim.name}' (axis {axis} of '{spec.name}') to "
                           f"{dims[axis].dim_value}; it only accepts that size.")
    return out


def _optimize(path: Path) -> list[str]:
    import onnxruntime as ort

    if path.with_name(path.name + ".data").exists():
        return ["onnxruntime optimisation was skipped: the model stores its weights outside."]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    optimized = path.with_name("optimized.onnx")
    options.optimized_model_filepath = str(optimized)
    with quiet():
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimized.replace(path)
    check_file(path)
    return []


def open_session(path: Path) -> Any:
    import onnxruntime as ort

    try:
        with quiet():
            return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise failure("onnxruntime could not load the exported ONNX model.", exc) from None


def run_session(session: Any, inputs: dict[str, Any]) -> list[Any]:
    names = {i.name for i in session.get_inputs()}
    try:
        feed = {k: v.detach().cpu().numpy() for k, v in inputs.items() if k in names}
        return session.run(None, feed)
    except Exception as exc:
        raise failure("onnxruntime could not run the exported ONNX model.", exc) from None



"""What every export target shares: options, the result, the job, staging, quieting, comparing."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.files import fsync_dir, same_file
from core.inputs import InputSpec, example_inputs, other_point
from core.progress import Progress, step

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

DETAILS_LIMIT = 6000


@dataclass
class ExportOptions:
    name: str = "model"  # file names: model.onnx, model.torchscript.pt, model.pt2, model.int8.*
    opset: int | None = None  # ONNX opset (None: the exporter's default)
    onnx_exporter: str = "auto"  # "auto" (dynamo, legacy on failure) | "dynamo" | "legacy"
    ort_optimize: bool = False  # save the ONNX graph as optimised by onnxruntime (basic level)
    torchscript_mode: str = "trace"  # "trace" | "script"
    quantize: str | None = None  # None | "dynamic-int8"
    output_names: tuple[str, ...] | None = None  # default: output / output_0, output_1, ...
    overwrite: bool = False
    protect: tuple[Path, ...] = ()  # files never written over (the checkpoint being exported)
    keep_going: bool = False  # a failed target becomes a result with `error` instead of raising
    check_shapes: bool = False  # ONNX: a second shape must match for the legacy exporter too
    atol: float = 1e-4  # verification tolerance vs eager: |a - b| <= atol + rtol * |b|
    rtol: float = 1e-4
    seed: int = 0
    preprocess: Any = None  # core.inputs.preprocess.Preprocess, recorded in every artefact that can
    bake_preprocess: bool = False  # ... and applied as the graph's first ops (core.export.preprocess)


@dataclass
class ExportResult:
    target: str  # "onnx" | "torchscript" | "pt2"
    path: str | None
    size: int = 0  # bytes, every file of the artefact together
    files: list[str] = field(default_factory=list)  # the artefact's files (ONNX external data)
    exporter: str = ""  # "dynamo" | "legacy" | "trace" | "script" | "export"
    opset: int | None = None
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    dynamic_dims: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fallback_reason: str | None = None  # why the dynamo ONNX exporter was not used
    max_abs_diff: float | None = None  # vs `reference` on the example input, after loading back
    checked_shapes: list[dict[str, Any]] = field(default_factory=list)  # {"inputs", "max_abs_diff"}
    reference: str = "eager"  # "eager" | "eager-int8" (torch-quantized) | "eager-float"
    quantized: str | None = None  # "dynamic-int8" for quantized artefacts
    quantization_error: float | None = None  # int8 artefacts: max abs diff vs the float model
    seconds: float = 0.0
    error: dict[str, str | None] | None = None  # with keep_going: {"message", "details"}
    preprocess: dict[str, Any] | None = None  # the recorded spec; with "raw_inputs" when baked

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"ok": self.ok}


@dataclass
class Job:
    """One export run: the model, its example inputs and eager outputs, and where to write."""

    model: nn.Module
    specs: list[InputSpec]
    out_dir: Path
    options: ExportOptions
    progress: Progress | None = None
    total: int = 1
    done: int = 0
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    expected: list[torch.Tensor] = field(default_factory=list)
    onnx_path: Path | None = None  # the float ONNX written this run (input of ONNX int8)
    program: Any = None  # the torch.export ExportedProgram, shared by the pt2 and ONNX targets
    program_error: ExportError | None = None
    staging: Path | None = None  # the run's private temp folder in out_dir (see `publishing`)
    pending: list[tuple[Path, Path]] = field(default_factory=list)  # (staged file, destination)
    _second: dict[str, torch.Tensor] | None = None

    @property
    def args(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.inputs.values())

    def stage(self, text: str) -> None:
        """Report one stage done; raises Cancelled when the user asked to stop."""
        self.done = min(self.done + 1, self.total)
        step(self.progress, self.done, self.total, text)

    def output_names(self, count: int) -> list[str]:
        names = list(self.options.output_names or ())
        if names and len(names) != count:
            raise ExportError(f"The model has {count} outputs but {len(names)} output names "
                              "were given.")
        return names or (["output"] if count == 1 else [f"output_{i}" for i in range(count)])

    def second_inputs(self) -> dict[str, torch.Tensor]:
        """Inputs at another shape and seed, to catch a trace frozen to the example input."""
        if self._second is None:
            self._second = example_inputs(self.specs, other_point(self.specs),
                                          self.options.seed + 1)
        return self._second


def run_eager(model: Any, args: tuple[Any, ...]) -> list[torch.Tensor]:
    import torch

    with torch.no_grad():
        torch.manual_seed(0)
        return flatten(model(*args))


def flatten(value: Any) -> list[Any]:
    """Tensors of a nested output (tuple/list/dict) in pytree order."""
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flatten(v)]
    if isinstance(value, dict):
        return [t for k in value for t in flatten(value[k])]
    return [] if value is None else [value]


def max_abs_diff(expected: list[Any], got: list[Any], what: str) -> float:
    """Largest |expected - got| over all outputs; ExportError if counts, shapes or dtypes differ."""
    import numpy as np
    import torch

    if len(expected) != len(got):
        raise ExportError(f"The {what} gives {len(got)} outputs but the model gives "
                          f"{len(expected)}.")
    worst = 0.0
    for i, (a, b) in enumerate(zip(expected, got, strict=True)):
        b = torch.from_numpy(np.asarray(b)) if not isinstance(b, torch.Tensor) else b
        if tuple(a.shape) != tuple(b.shape):
            raise ExportError(f"The {what} gives output {i} the shape {list(b.shape)} instead of "
                              f"{list(a.shape)}.")
        if a.numel():
            worst = max(worst, (a.double() - b.double()).abs().max().item())
    return worst


def check_close(job: Job, expected: list[Any], got: list[Any], what: str) -> float:
    """max_abs_diff, raising ExportError when outside the options' tolerance."""
    diff = max_abs_diff(expected, got, what)
    scale = max((float(t.double().abs().max()) for t in expected if t.numel()), default=0.0)
    if not diff <= job.options.atol + job.options.rtol * scale:  # NaN fails too
        raise ExportError(f"The {what} gives different results from the model (largest "
                          f"difference {diff:.3g}); it was not saved.")
    return diff


def frozen_warning(job: Job, model: Any, run: Any, what: str) -> list[str]:
    """Run `run(inputs)` at another shape and compare with `model`: a trace records one path through
    Python control flow, so a mismatch there means it froze something that depends on the input."""
    inputs = job.second_inputs()
    shapes = shapes_label(inputs)
    try:
        expected = run_eager(model, tuple(inputs.values()))
    except Exception:
        return []  # the model itself does not take this shape; nothing to compare
    try:
        diff = max_abs_diff(expected, run(inputs), what)
    except Exception as exc:
        text = exc.message if isinstance(exc, ExportError) else first_line(exc)
        return [f"The {what} fails at another input shape ({shapes}): {text}"]
    scale = max((float(t.double().abs().max()) for t in expected if t.numel()), default=0.0)
    if not diff <= job.options.atol + job.options.rtol * scale:
        return [f"The {what} differs from the model at another input shape ({shapes}) by "
                f"{diff:.3g}: tracing froze control flow that depends on the input."]
    return []


def shapes_label(inputs: dict[str, Any]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in inputs.items())


def verify_other_shape(job: Job, run: Any, what: str) -> dict[str, Any] | None:
    """Check the artefact at a second shape (other_point) where the model takes it: an export that
    claims dynamic dims must give the model's results there too, or it is not saved."""
    inputs = job.second_inputs()
    try:
        expected = run_eager(job.model, tuple(inputs.values()))
    except Exception:
        return None  # the model itself does not take this shape; nothing to compare
    try:
        diff = check_close(job, expected, run(inputs), what)
    except ExportError as exc:
        raise ExportError(f"At a second input shape ({shapes_label(inputs)}): {exc.message}",
                          exc.details) from None
    return {"inputs": shapes_label(inputs), "max_abs_diff": diff}


def dynamic_dims_of(specs: list[InputSpec]) -> dict[str, dict[int, dict[str, Any]]]:
    return {s.name: {i: {"name": d.name, "min": d.lo, "max": d.max}
                     for i, d in enumerate(s.dims) if d.is_dynamic}
            for s in specs if any(d.is_dynamic for d in s.dims)}


@contextlib.contextmanager
def publishing(job: Job) -> Iterator[None]:
    """One export run as a whole: every artefact is staged in a private temp folder in the output
    folder and moved onto its final name when the run ends. A run stopped by an export error still
    publishes the artefacts it completed and verified before the error; a cancelled run (or any
    other interruption) publishes nothing, so it leaves nothing behind."""
    job.staging = Path(tempfile.mkdtemp(prefix=f".{job.options.name}.", suffix=".partial",
                                        dir=job.out_dir))
    try:
        try:
            yield
        except ExportError:
            _publish(job)
            raise
        _publish(job)
    finally:
        shutil.rmtree(job.staging, ignore_errors=True)


def _publish(job: Job) -> None:
    try:
        for staged_file, dest in job.pending:
            os.replace(staged_file, dest)
        if job.pending:
            fsync_dir(job.out_dir)
    except OSError as exc:
        raise ExportError(f"Writing into '{job.out_dir}' failed ({exc.strerror or exc}).",
                          str(exc)) from None


@contextlib.contextmanager
def staged(job: Job, finals: list[str]) -> Iterator[Path]:
    """The run's staging folder for one artefact (file names in out_dir). When the block ends
    normally its files are queued for publishing; otherwise they are removed."""
    assert job.staging is not None, "staged() runs inside publishing()"
    dests = [job.out_dir / name for name in finals]
    for dest in dests:
        check_destination(dest, job.options)
    tmp = job.staging
    try:
        yield tmp
        written = [(tmp / dest.name, dest) for dest in dests if (tmp / dest.name).exists()]
        for staged_file, _ in written:
            _fsync(staged_file)
        job.pending += reversed(written)  # data files before the file that refers to them
    except OSError as exc:
        _remove(tmp, finals)
        raise ExportError(f"Writing into '{job.out_dir}' failed ({exc.strerror or exc}); "
                          "nothing was written.", str(exc)) from None
    except BaseException:
        _remove(tmp, finals)
        raise


def _remove(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).unlink(missing_ok=True)


def check_destination(dest: Path, options: ExportOptions) -> None:
    if any(same_file(dest, p) for p in options.protect):
        raise ExportError(f"'{dest}' is the file being exported; choose another output name or "
                          "folder (the source is never overwritten).")
    if dest.is_dir():
        raise ExportError(f"'{dest}' is a folder; the export cannot replace it.")
    if dest.exists() and not options.overwrite:
        raise ExportError(f"'{dest}' already exists. Choose another name or folder, or allow "
                          "overwriting it (--overwrite).")


def artefact_files(job: Job, names: list[str]) -> tuple[list[str], int]:
    """The artefact's final paths (published when the run ends) and its size in bytes."""
    staged_files = [job.staging / n for n in names if job.staging and (job.staging / n).exists()]
    return ([str(job.out_dir / p.name) for p in staged_files],
            sum(p.stat().st_size for p in staged_files))


def finished(job: Job, result: ExportResult, names: list[str], start: float) -> ExportResult:
    """Fill in the staged artefact's files, size, path and the time since `start`."""
    result.files, result.size = artefact_files(job, names)
    result.path = result.files[0]
    result.seconds = time.perf_counter() - start
    return result


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@dataclass
class Captured:
    text: str = ""
    warnings: list[warnings.WarningMessage] = field(default_factory=list)

    def tracer_warnings(self) -> list[str]:
        """The tracer's warnings about the model's own code ('file.py:12: Converting a tensor to a
        Python boolean ...'); those raised inside torch's modules (LSTM's checks) are left out."""
        import torch

        inside = str(Path(torch.__file__).parent)
        return [f"{Path(w.filename).name}:{w.lineno}: {str(w.message).split('. ')[0]}"
                for w in self.warnings if w.category.__name__ == "TracerWarning"
                and not str(w.filename).startswith(inside)]


@contextlib.contextmanager
def quiet() -> Iterator[Captured]:
    """Swallow what exporters print, log and warn; keep it for error details and our warnings."""
    captured, buf = Captured(), io.StringIO()
    level = logging.root.manager.disable
    logging.disable(logging.ERROR)  # torch's and onnxruntime's log lines; failures come as errors
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("always")
            captured.warnings = caught  # filled as warnings come
            yield captured
    finally:
        logging.disable(level)
        captured.text = buf.getvalue()


def failure(message: str, exc: BaseException, captured: Captured | None = None) -> ExportError:
    """An ExportError with `message` and the exporter's own words (ANSI codes removed) as details."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    while cause is not None:
        text += f"\ncaused by {type(cause).__name__}: {cause}"
        cause = cause.__cause__
    if captured is not None and captured.text.strip():
        text += "\n--- exporter output ---\n" + captured.text[-2000:]
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return ExportError(message, text[:DETAILS_LIMIT])


def root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


class DimRangeError(ExportError):
    """torch.export says the model does not take every size in a dynamic dim's range."""


def dim_problem(exc: BaseException) -> ExportError | None:
    """A friendly ExportError when torch.export says the spec's dim ranges don't fit the model."""
    text = "\n".join(str(e) for e in _chain(exc))
    if "Constraints violated" not in text:
        return None
    fixes = re.findall(r"^\s+(\w+ = .+)$", text.split("Suggested fixes:", 1)[-1], re.M)
    hint = f" (torch.export suggests: {'; '.join(fixes[:3])})" if fixes else ""
    names = sorted(set(re.findall(r"Constraints violated \(([^)]*)\)", text)))
    what = f"'{', '.join(names)}'" if names else "a dynamic dim"
    error = failure(f"The model does not accept every size of {what} in the input spec's "
                    f"range{hint}; narrow the range or make the dim static.", exc)
    return DimRangeError(error.message, error.details)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__

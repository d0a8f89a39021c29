"""The core calls the export and checks panels run on the worker (gui.worker.Job). No widgets and no
logic of their own: each function strings together core functions, importing them (and torch,
onnxruntime, pyqtgraph) only when it runs, off the GUI thread, so the app starts without them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from core.arch import LoadReport
    from core.checks.latency import LatencyResult
    from core.checks.parity import ParityResult
    from core.export import ExportOptions, ExportResult
    from core.inputs import InputSpec
    from core.progress import Progress

CODE_FORMATS = ("torchscript", "pt2", "torch-zip", "torch-legacy")  # running them runs code


# -- export ------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    model: Any  # the nn.Module, opaque to the GUI
    report: LoadReport | None  # None without a weights file
    key: tuple[Any, ...]  # the fields it was loaded from


def load_model(source: str, kwargs_text: str, trust: bool, weights: str,
               key: tuple[Any, ...] = ()) -> LoadedModel:
    """Build the architecture and load the weights into it, as `ckpt-studio export` does."""
    from core.build import build_model, parse_kwargs

    model, report = build_model(source, weights or None, kwargs=parse_kwargs(kwargs_text),
                                trust=trust, search_path=Path.cwd(), strict=False)
    return LoadedModel(model, report, key)


def infer_inputs(model: Any) -> list[InputSpec]:
    from core.inputs import infer_spec

    return infer_spec(model)


def run_export(model: Any, specs: list[InputSpec], targets: list[str], out_dir: str,
               options: ExportOptions, progress: Progress | None = None) -> list[ExportResult]:
    from core.export import export

    return export(model, specs, targets, out_dir, options, progress)


# -- checks ------------------------------------------------------------------------------------------
def artefact_formats(paths: list[str]) -> list[str]:
    """The format of each file, sniffed by content (core.formats); nothing in them runs."""
    from core.formats import open_checkpoint

    return [open_checkpoint(p).format for p in paths]


def run_parity(reference: str, candidate: str, trust: bool, specs: list[InputSpec] | None,
               points: list[dict[str, int]] | None, atol: float | None, rtol: float | None,
               progress: Progress | None = None) -> ParityResult:
    from core.checks.parity import check_parity
    from core.runtime import build_runner

    ref, cand = build_runner(reference, trust), build_runner(candidate, trust)
    return check_parity(ref, cand, specs, points=points, atol=atol, rtol=rtol, progress=progress)


def run_latency(paths: list[str], trust: bool, specs: list[InputSpec] | None, batches: list[int],
                runs: int, warmup: int, budget_s: float | None,
                kwargs: list[dict[str, Any] | None] | None = None,
                progress: Progress | None = None) -> LatencyResult:
    """`kwargs[i]` (a model folder's task / pooling) goes to the runner of `paths[i]`."""
    import pyqtgraph  # noqa: F401 - loaded here, off the GUI thread, for the plots that follow

    from core.checks.latency import measure_latency
    from core.runtime import build_runner

    sources = list(zip(paths, kwargs or [None] * len(paths), strict=True))
    unique = [s for i, s in enumerate(sources) if s not in sources[:i]]
    runners = [build_runner(p, trust, kwargs=k) for p, k in unique]
    return measure_latency(runners, specs, batches, warmup=warmup, runs=runs, budget_s=budget_s,
                           progress=progress)


def save_report(result: Any, path: str) -> str:
    """HTML / Markdown (core.report.checks) or JSON (result.to_dict()) by suffix, written atomically
    (temp file in the folder, fsync, os.replace)."""
    from core.files import write_text
    from core.report import to_json
    from core.report.checks import render_html, render_markdown

    suffix = Path(path).suffix.lower()
    text = to_json(result) if suffix == ".json" else \
        render_markdown(result) if suffix == ".md" else render_html(result)
    write_text(Path(path), text)
    return path

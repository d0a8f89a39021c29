""""Find where it diverges" for the checks panel: after a failed parity run, core.checks.locate
compares every module's output of the two models on the first failing case (on the worker) and this
box says in plain words which module is the first out of tolerance, with the depth plot
(gui.views.locate_plot) of the error along execution order."""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.locate import Localisation
    from core.checks.parity import ParityResult
    from core.progress import Progress

BUTTON_TIP = ("Compare the two models module by module on the first failing input, and show the "
              "first module whose output is out of tolerance")


@dataclass
class LocateRequest:
    """What a parity run compared, to look inside the same two models on one of its cases."""

    reference: str
    candidate: str
    trust: bool
    specs: Any  # list[InputSpec] | None, as the panel passed to parity
    atol: float | None
    rtol: float | None
    npz: list[str]  # the .npz cases parity tested ([] when it made its own inputs)
    point: dict[str, int] | None = None
    case_file: str | None = None
    kwargs: tuple[Any, Any] = (None, None)  # each side's runner options (a model folder's task)

    def for_case(self, result: ParityResult) -> LocateRequest:
        """This request on the first failing case of `result` (its .npz file or its sizes)."""
        index = next((i for i, c in enumerate(result.cases) if not c.passed), 0)
        case = result.cases[index] if result.cases else None
        file = self.npz[index] if self.npz and index < len(self.npz) else None
        point = dict(case.sizes) if case is not None and case.sizes else None
        return replace(self, point=point, case_file=file)


def run_locate(request: LocateRequest, progress: Progress | None = None) -> Localisation:
    """Build both runners as parity did and locate the first diverging module."""
    import pyqtgraph  # noqa: F401 - loaded here, off the GUI thread, for the plot that follows

    from core.checks.common import load_cases
    from core.checks.locate import locate
    from core.runtime import build_runner

    inputs = load_cases([request.case_file])[0] if request.case_file else None
    ref = build_runner(request.reference, request.trust, kwargs=request.kwargs[0])
    cand = build_runner(request.candidate, request.trust, kwargs=request.kwargs[1])
    return locate(ref, cand, request.specs, inputs=inputs, point=request.point, atol=request.atol,
                  rtol=request.rtol, progress=progress)


def describe(loc: Localisation) -> str:
    """The located divergence in plain words (HTML for a QLabel)."""
    shapes = ", ".join(f"{html.escape(k)} {v}" for k, v in loc.input_shapes.items())
    first = loc.first_divergence
    if first is None:
        text = (f"Every one of the {len(loc.rows)} modules compared agrees within tolerance on this "
                "input; the difference arises outside them (in the final steps of the graph).")
    else:
        before = first.depth - 1
        text = (f"<b>First divergence: {html.escape(first.module)}</b> ({html.escape(first.module_type)}"
                f"; candidate op {html.escape(first.op)}), module {first.depth} of {len(loc.rows)} in "
                f"execution order. Its output differs by up to {_number(first.max_abs)} (relative "
                f"{_number(first.max_rel)}); "
                + (f"the {before} module{'s' if before != 1 else ''} before it agree."
                   if before else "it is the first module compared."))
    return f"{text}<br><span style='color:gray'>Input: {shapes}</span>"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


class LocateBox(QWidget):
    """The button and the box (both placed by the panel): the plain-words result, core's notes and
    the depth plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QPushButton("Find where it diverges")
        self.button.setToolTip(BUTTON_TIP)
        self.summary = QLabel(wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.notes = QLabel(wordWrap=True)
        self.plot: Any = None
        self.result: Localisation | None = None
        self.body = QVBoxLayout(self)
        self.body.addWidget(self.summary)
        self.body.addWidget(self.notes)

    def clear(self) -> None:
        self.result = None

    def show_result(self, loc: Localisation) -> None:
        from gui.views.latency_plots import make_plot
        from gui.views.locate_plot import draw_depth

        self.result = loc
        self.summary.setText(describe(loc))
        self.notes.setText("\n".join(loc.notes))
        self.notes.setVisible(bool(loc.notes))
        if self.plot is None:
            self.plot = make_plot(self, "module (execution order)", "max abs difference")
            self.plot.setMinimumHeight(180)
            self.body.addWidget(self.plot, 1)
        draw_depth(self.plot, loc)

"""Checks panel: parity between two artefacts (a table per output and shape, pass/fail coloured;
per-output tolerances, .npz input files and a folder for the failing cases as the CLI's --tol /
--inputs-npz / --save-dir; saved cases can be tested again in one click) and latency at several
batch sizes (pyqtgraph: percentiles vs batch per backend, p50 bars), with reports. The work is core's
(core.runtime.build_runner, core.checks.parity/latency, core.report.checks), run on the worker;
TorchScript / .pt2 / pickled models run only after the user accepts a warning. A Hugging Face model
folder runs as its transformers model (gui.views.checks_pickers lists it by what it runs as). After
a failed parity run, "Find where it diverges" locates the first diverging module
(gui.views.locate_view)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.errors import CheckFailed
from gui.jobs import CODE_FORMATS, artefact_formats, run_latency, save_report
from gui.views.checks_fields import format_points, parse_batches, parse_points, tolerance_value
from gui.views.checks_parity import ParityResultsBox
from gui.views.checks_pickers import ArtefactPicker
from gui.views.job_bar import JobBar
from gui.views.locate_view import LocateBox, LocateRequest, run_locate
from gui.views.parity_inputs import (
    NpzField,
    SaveDirField,
    parse_tolerances,
    run_parity,
    saved_cases,
    saved_text,
    tolerances_field,
)
from gui.views.parts import ErrorBanner, JobPanelState, ask_trust, hbox, run_job
from gui.views.spec_editor import SpecEditor

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.latency import LatencyResult
    from core.checks.locate import Localisation
    from core.checks.parity import ParityResult

REPORTS = "HTML report (*.html);;JSON (*.json);;Markdown (*.md)"


class ChecksPanel(JobPanelState, QWidget):
    finished = Signal(str)  # "done" | "error" | "cancelled" | "declined" at the end of a run

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = "idle"
        self.trust_prompt: Callable[[QWidget, list[str]], bool] = ask_trust
        self.trusted: set[str] = set()
        self.parity: ParityResult | None = None
        self.latency: LatencyResult | None = None
        self.line_plot: Any = None
        self.bar_plot: Any = None
        self._locate: LocateRequest | None = None  # the last parity run's models and settings
        self._build()
        self._update_buttons()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self._models_group(), 3)
        side = QVBoxLayout()
        side.addWidget(self._parity_group())
        side.addWidget(self._latency_group())
        top.addLayout(side, 2)
        settings = QWidget()
        settings.setLayout(top)
        results = QSplitter(Qt.Orientation.Horizontal)
        results.addWidget(self._parity_results())
        results.addWidget(self._latency_results())
        results.setSizes([700, 540])
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(settings)
        splitter.addWidget(results)
        splitter.setStretchFactor(1, 1)
        self.banner = ErrorBanner()
        self.bar = JobBar()
        self.status = QLabel(wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        layout.addLayout(hbox(self.status, self.bar, grow=self.status))

    def _models_group(self) -> QGroupBox:
        box = QGroupBox("Models")
        form = QFormLayout(box)
        self.pickers = (ArtefactPicker(), ArtefactPicker())
        self.reference, self.candidate = (picker.combo for picker in self.pickers)
        form.addRow("Reference:", self.pickers[0])
        form.addRow("Candidate:", self.pickers[1])
        self.spec = SpecEditor("empty: the ONNX model's declared inputs, or a model folder's own")
        self.spec.changed.connect(self._spec_changed)
        form.addRow("Inputs:", self.spec)
        self.npz = NpzField()
        self.npz.changed.connect(lambda text: self.shapes.setEnabled(not text.strip()))
        form.addRow("Input files:", self.npz)
        return box

    def _parity_group(self) -> QGroupBox:
        box = QGroupBox("Parity")
        form = QFormLayout(box)
        self.shapes = QLineEdit(placeholderText="default: batch 1, 16, 64 and each dim's min/max")
        self.shapes.textEdited.connect(lambda: setattr(self, "_shapes_auto", False))
        self._shapes_auto = True
        self.atol, self.rtol = (QLineEdit(placeholderText="by dtype (float32: 1e-4)")
                                for _ in range(2))
        for edit in (self.atol, self.rtol):
            edit.setValidator(QDoubleValidator(0.0, 1e9, 12))
        self.tolerances = tolerances_field()
        self.parity_button = QPushButton("Run parity")
        self.parity_button.clicked.connect(self.start_parity)
        form.addRow("Shapes:", self.shapes)
        form.addRow("atol:", self.atol)
        form.addRow("rtol:", self.rtol)
        form.addRow("Per output:", self.tolerances)
        self.save_dir = SaveDirField()
        form.addRow("Save failing cases to:", self.save_dir)
        form.addRow("", self.parity_button)
        return box

    def _latency_group(self) -> QGroupBox:
        box = QGroupBox("Latency")
        form = QFormLayout(box)
        self.batches = QLineEdit("1,16,64")
        self.runs = QSpinBox(minimum=1, maximum=100_000, value=50)
        self.warmup = QSpinBox(minimum=0, maximum=10_000, value=5)
        self.budget = QLineEdit(placeholderText="none")
        self.budget.setValidator(QDoubleValidator(0.0, 1e6, 3))
        self.latency_button = QPushButton("Run latency")
        self.latency_button.clicked.connect(self.start_latency)
        form.addRow("Batches:", self.batches)
        form.addRow("Runs / warm-up:", hbox(self.runs, self.warmup))
        form.addRow("Budget (s per batch):", self.budget)
        form.addRow("", self.latency_button)
        return box

    def _parity_results(self) -> QWidget:
        box = self.parity_box = ParityResultsBox()
        self.summary, self.legend, self.notes = box.summary, box.legend, box.notes
        self.table_model, self.table = box.table_model, box.table
        self.save_parity, self.retest = box.save_parity, box.retest
        self.save_parity.clicked.connect(lambda: self._choose_report("parity"))
        self.retest.clicked.connect(self.use_saved_cases)
        self.locate_box = LocateBox()
        self.locate_box.button.clicked.connect(self.find_divergence)
        box.buttons.insertWidget(1, self.locate_box.button)
        box.tabs.addTab(self.locate_box, "Where it diverges")
        box.tabs.setTabVisible(1, False)
        return box

    def _latency_results(self) -> QWidget:
        box = QGroupBox("Latency results")
        self.plot_area = QVBoxLayout()
        self.plot_hint = QLabel("Run a latency check to plot p50/p90/p99 against batch size.",
                                alignment=Qt.AlignmentFlag.AlignCenter)
        self.plot_legend = QLabel()
        self.plot_area.addWidget(self.plot_legend)
        self.plot_area.addWidget(self.plot_hint, 1)
        self.save_latency = QPushButton("Save report…")
        self.save_latency.clicked.connect(lambda: self._choose_report("latency"))
        layout = QVBoxLayout(box)
        layout.addLayout(self.plot_area, 1)
        layout.addLayout(hbox(self.save_latency, stretch_at=0))
        return box

    # -- public --------------------------------------------------------------------------------
    def add_artefacts(self, paths: list[str], hf_options: dict[str, Any] | None = None) -> None:
        """Offer `paths` (e.g. export results) in both pickers: the first as the reference, the
        second as the candidate. A Hugging Face model folder is listed by what it runs as, with
        `hf_options` ({"task": …, "pooling": …}, as it was exported) when given."""
        def options(path: str) -> dict[str, Any] | None:
            return hf_options if hf_options and Path(path).is_dir() else None

        for picker in self.pickers:
            for path in paths:
                picker.add(path, options(path))
        if paths:
            second = paths[1] if len(paths) > 1 else paths[0]
            self.pickers[0].select(paths[0], options(paths[0]))
            self.pickers[1].select(second, options(second))

    def set_artefacts(self, reference: str, candidate: str) -> None:
        self.add_artefacts([reference, candidate])

    def cancel(self) -> None:
        self.bar.cancel()

    def shutdown(self) -> None:
        """Cancel the running job and drop its result (the tab is closing)."""
        self.bar.shutdown()
        self.state = "idle"

    # -- running -------------------------------------------------------------------------------
    def start_parity(self) -> None:
        try:
            paths, npz = self._paths(), self.npz.paths()  # .npz cases replace the spec and shapes
            inputs = (None, None) if npz else (self._specs(), parse_points(self.shapes.text()))
            args = (*inputs, tolerance_value(self.atol), tolerance_value(self.rtol))
            tolerances = parse_tolerances(self.tolerances.text())
            save_dir = self.save_dir.folder()
        except CheckFailed as exc:
            return self._fail(exc.message, exc.details or "")
        kwargs = self._runner_options()

        def start(trust: bool) -> None:
            self._locate = LocateRequest(*paths, trust, inputs[0], *args[2:], npz, kwargs=kwargs)
            run_job(self.bar, self, run_parity, paths[0], paths[1], trust, *args, kwargs=kwargs,
                    tolerances=tolerances, npz=npz, save_dir=save_dir, text="Checking parity…",
                    done=self._on_parity, failed=self._fail, cancelled=self._on_cancelled)

        self._run_trusted(paths, start)

    def find_divergence(self) -> None:
        """Look inside the two models of the last failed parity run, on its first failing case."""
        if self.parity is None or self._locate is None:
            return
        self._begin()
        run_job(self.bar, self, run_locate, self._locate.for_case(self.parity),
                text="Finding where the models diverge…", done=self._on_locate, failed=self._fail,
                cancelled=self._on_cancelled)

    def use_saved_cases(self) -> None:
        """The last run's saved failing cases become the input files (run parity to test them)."""
        saved = saved_cases(self.parity) if self.parity is not None else []
        if saved:
            self.npz.set_text("; ".join(saved))

    def start_latency(self) -> None:
        try:
            paths = self._paths()
            budget = tolerance_value(self.budget) or None
            args = (self._specs(), parse_batches(self.batches.text()), self.runs.value(),
                    self.warmup.value(), budget)
        except CheckFailed as exc:
            return self._fail(exc.message, exc.details or "")
        kwargs = list(self._runner_options())
        self._run_trusted(paths, lambda trust: run_job(
            self.bar, self, run_latency, paths, trust, *args, kwargs=kwargs, text="Measuring latency…",
            done=self._on_latency, failed=self._fail, cancelled=self._on_cancelled))

    def _runner_options(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        reference, candidate = (picker.runner_options() for picker in self.pickers)
        return reference, candidate

    def _paths(self) -> list[str]:
        paths = [picker.source() for picker in self.pickers]
        if not all(paths):
            raise CheckFailed("Choose the two models to compare: a reference and a candidate.")
        return paths

    def _specs(self) -> Any:
        specs = self.spec.specs()
        if specs is None:
            raise CheckFailed(self.spec.error())
        return specs or None

    def _run_trusted(self, paths: list[str], start: Callable[[bool], Any]) -> None:
        """Find which files are code (on the worker), ask once per file, then `start(trust)`. A
        model folder is not asked about: its weights are read as data, never unpickled as code."""
        self._begin()
        files = [p for p in paths if not Path(p).is_dir()]
        run_job(self.bar, self, artefact_formats, files, text="Reading the models…",
                done=lambda formats: self._after_formats(files, formats, start),
                failed=self._fail, cancelled=self._on_cancelled)

    def _after_formats(self, paths: list[str], formats: list[str],
                       start: Callable[[bool], Any]) -> None:
        code = [p for p, f in zip(paths, formats, strict=True) if f in CODE_FORMATS]
        unasked = [p for p in dict.fromkeys(code) if p not in self.trusted]
        if unasked and not self.trust_prompt(self, unasked):
            self._end("declined", "Not run: the models were not trusted.")
            return
        self.trusted.update(unasked)
        start(bool(code))

    # -- results -------------------------------------------------------------------------------
    def _on_parity(self, result: ParityResult) -> None:
        self.parity = result
        passed, total = self.parity_box.show_result(result)
        self.locate_box.clear()
        self.parity_box.tabs.setTabVisible(1, False)
        status = "all outputs match." if result.passed else f"{total - passed} of {total} cases fail."
        self._end("done", " ".join(filter(None, ("Parity:", status, saved_text(result)))))

    def _on_locate(self, loc: Localisation) -> None:
        self.locate_box.show_result(loc)
        self.parity_box.tabs.setTabVisible(1, True)
        self.parity_box.tabs.setCurrentIndex(1)
        if self.parity is not None:  # "Save report…" then has the depth plot and the table
            self.parity.localisation = loc.to_json()
        first = loc.first_divergence
        self._end("done", f"Located: the first module out of tolerance is {first.module}." if first
                  else "Located: every module compared agrees within tolerance.")

    def _on_latency(self, result: LatencyResult) -> None:
        from gui.views.latency_plots import draw_latency, legend_html

        self.latency = result
        if self.line_plot is None:
            from gui.views.latency_plots import make_plot

            self.plot_hint.setVisible(False)
            self.line_plot = make_plot(self, "batch size", "latency (ms)")
            self.bar_plot = make_plot(self, "batch size", "p50 latency (ms)")
            self.plot_area.addWidget(self.line_plot, 3)
            self.plot_area.addWidget(self.bar_plot, 2)
        draw_latency(self.line_plot, self.bar_plot, result)
        self.plot_legend.setText(legend_html(result))
        errors = [b.error for r in result.runners for b in r.batches if b.error]
        self._end("done", f"Latency: {len(result.runners)} model(s) timed." if not errors
                  else f"Latency: {len(errors)} run(s) failed: {errors[0]}")

    def _choose_report(self, which: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save report", f"{which}-report.html", REPORTS)
        if path:
            self.save_report(which, path)

    def save_report(self, which: str, path: str) -> None:
        result = self.parity if which == "parity" else self.latency
        if result is None:
            return
        self._begin()
        run_job(self.bar, self, save_report, result, path, text="Saving the report…",
                done=lambda p: self._end("done", f"Report saved to {p}."),
                failed=self._fail, cancelled=self._on_cancelled)

    # -- state -----------------------------------------------------------------------------------
    def _spec_changed(self) -> None:
        specs = self.spec.specs()
        if not self._shapes_auto or specs is None:
            return
        from core.inputs import shapes_to_test

        self.shapes.setText(format_points(shapes_to_test(specs)) if specs else "")

    def _on_cancelled(self) -> None:
        self._end("cancelled", "Cancelled.")

    def _update_buttons(self) -> None:
        busy = self.state == "running"
        self.parity_button.setEnabled(not busy)
        self.latency_button.setEnabled(not busy)
        self.save_parity.setEnabled(not busy and self.parity is not None)
        self.retest.setEnabled(not busy)
        self.locate_box.button.setEnabled(not busy and self.parity is not None
                                          and not self.parity.passed and self._locate is not None)
        self.save_latency.setEnabled(not busy and self.latency is not None)

"""Checks panel: parity between two artefacts (a table per output and shape, pass/fail coloured;
per-output tolerances, .npz input files and a folder for the failing cases as the CLI's --tol /
--inputs-npz / --save-dir; saved cases can be tested again in one click) and latency at several
batch sizes (pyqtgraph: percentiles vs batch per backend, p50 bars), with reports. The work is core's
(core.runtime.build_runner, core.checks.parity/latency, core.report.checks), run on the worker;
TorchScript / .pt2 / pickled models run only after the user accepts a warning."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from core.errors import CheckFailed
from gui.jobs import CODE_FORMATS, artefact_formats, run_latency, save_report
from gui.models.parity_table import ParityTableModel, legend_html
from gui.views.job_bar import JobBar
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
    from core.checks.parity import ParityResult

ARTEFACTS = "Models (*.onnx *.pt *.pth *.pt2 *.ts *.jit);;All files (*)"
REPORTS = "HTML report (*.html);;JSON (*.json);;Markdown (*.md)"


# -- small text fields ------------------------------------------------------------------------------
def parse_points(text: str) -> list[dict[str, int]] | None:
    """'batch=1; batch=16' -> [{'batch': 1}, {'batch': 16}]; '' -> None (the default shapes)."""
    points = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        point = {}
        for pair in filter(None, (p.strip() for p in part.split(","))):
            name, sep, size = (s.strip() for s in pair.partition("="))
            if not sep or not name.isidentifier() or not size.isdigit():
                raise CheckFailed(f"'{pair}' is not a shape setting; write the shapes like "
                                  "'batch=1; batch=16' (dim=size, ';' between shapes).")
            point[name] = int(size)
        points.append(point)
    return points or None


def format_points(points: list[dict[str, int]]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in points if p)


def parse_batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.replace(";", ",").split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise CheckFailed(f"'{text}' is not a list of batch sizes; write it like '1,16,64'.")
    return sizes


def _tolerance(edit: QLineEdit) -> float | None:
    text = edit.text().strip()
    return float(text) if text else None


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
        self.reference, self.candidate = self._artefact_combo(), self._artefact_combo()
        form.addRow("Reference:", _with_browse(self.reference, self._browse))
        form.addRow("Candidate:", _with_browse(self.candidate, self._browse))
        self.spec = SpecEditor("empty: the ONNX model's declared inputs")
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
        box = QGroupBox("Parity results")
        self.summary = QLabel("Run a parity check to compare the two models' outputs.")
        font = QFont(self.summary.font())
        font.setBold(True)
        self.summary.setFont(font)
        self.legend = QLabel()
        self.notes = QLabel(wordWrap=True)
        self.table_model = ParityTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.save_parity = QPushButton("Save report…")
        self.save_parity.clicked.connect(lambda: self._choose_report("parity"))
        self.retest = QPushButton("Test the saved cases again")
        self.retest.setToolTip("Put the saved failing cases in 'Input files', then run parity "
                               "again to test exactly those inputs")
        self.retest.clicked.connect(self.use_saved_cases)
        self.retest.setVisible(False)
        layout = QVBoxLayout(box)
        layout.addLayout(hbox(self.summary, self.legend, stretch_at=1))
        layout.addWidget(self.notes)
        layout.addWidget(self.table, 1)
        layout.addLayout(hbox(self.retest, self.save_parity, stretch_at=1))
        self.notes.setVisible(False)
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

    def _artefact_combo(self) -> QComboBox:
        combo = QComboBox(editable=True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.lineEdit().setPlaceholderText("an ONNX, TorchScript or .pt2 file")
        combo.setMinimumContentsLength(28)
        return combo

    # -- public --------------------------------------------------------------------------------
    def add_artefacts(self, paths: list[str]) -> None:
        """Offer `paths` (e.g. export results) in both pickers: the first as the reference, the
        second as the candidate."""
        for combo in (self.reference, self.candidate):
            for path in paths:
                if combo.findText(path) < 0:
                    combo.addItem(path)
        if paths:
            self.reference.setCurrentText(paths[0])
            self.candidate.setCurrentText(paths[1] if len(paths) > 1 else paths[0])

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
            args = (*inputs, _tolerance(self.atol), _tolerance(self.rtol))
            tolerances = parse_tolerances(self.tolerances.text())
            save_dir = self.save_dir.folder()
        except CheckFailed as exc:
            return self._fail(exc.message, exc.details or "")
        self._run_trusted(paths, lambda trust: run_job(
            self.bar, self, run_parity, paths[0], paths[1], trust, *args, tolerances=tolerances,
            npz=npz, save_dir=save_dir, text="Checking parity…", done=self._on_parity, failed=self._fail,
            cancelled=self._on_cancelled))

    def use_saved_cases(self) -> None:
        """The last run's saved failing cases become the input files (run parity to test them)."""
        saved = saved_cases(self.parity) if self.parity is not None else []
        if saved:
            self.npz.set_text("; ".join(saved))

    def start_latency(self) -> None:
        try:
            paths = self._paths()
            budget = _tolerance(self.budget) or None
            args = (self._specs(), parse_batches(self.batches.text()), self.runs.value(),
                    self.warmup.value(), budget)
        except CheckFailed as exc:
            return self._fail(exc.message, exc.details or "")
        self._run_trusted(paths, lambda trust: run_job(
            self.bar, self, run_latency, paths, trust, *args, text="Measuring latency…",
            done=self._on_latency, failed=self._fail, cancelled=self._on_cancelled))

    def _paths(self) -> list[str]:
        paths = [c.currentText().strip() for c in (self.reference, self.candidate)]
        if not all(paths):
            raise CheckFailed("Choose the two models to compare: a reference and a candidate.")
        return paths

    def _specs(self) -> Any:
        specs = self.spec.specs()
        if specs is None:
            raise CheckFailed(self.spec.error())
        return specs or None

    def _run_trusted(self, paths: list[str], start: Callable[[bool], Any]) -> None:
        """Find which files are code (on the worker), ask once per file, then `start(trust)`."""
        self._begin()
        run_job(self.bar, self, artefact_formats, paths, text="Reading the models…",
                done=lambda formats: self._after_formats(paths, formats, start),
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
        self.table_model.set_result(result)
        self.table.resizeColumnsToContents()
        passed, total = self.table_model.counts()
        self.summary.setText(f"{'✓' if result.passed else '✗'}  {passed} of {total} cases pass")
        self.legend.setText(legend_html(self.palette()))
        self.notes.setText("\n".join(result.notes))
        self.notes.setVisible(bool(result.notes))
        self.retest.setVisible(bool(saved_cases(result)))
        status = "all outputs match." if result.passed else f"{total - passed} of {total} cases fail."
        self._end("done", " ".join(filter(None, ("Parity:", status, saved_text(result)))))

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

    def _browse(self, combo: QComboBox) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", combo.currentText(),
                                              ARTEFACTS)
        if path:
            combo.setCurrentText(path)

    def _on_cancelled(self) -> None:
        self._end("cancelled", "Cancelled.")

    def _update_buttons(self) -> None:
        busy = self.state == "running"
        self.parity_button.setEnabled(not busy)
        self.latency_button.setEnabled(not busy)
        self.save_parity.setEnabled(not busy and self.parity is not None)
        self.retest.setEnabled(not busy)
        self.save_latency.setEnabled(not busy and self.latency is not None)


def _with_browse(combo: QComboBox, browse: Callable[[QComboBox], None]) -> QHBoxLayout:
    button = QPushButton("Browse…")
    button.clicked.connect(lambda: browse(combo))
    return hbox(combo, button, grow=combo)

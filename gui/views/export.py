"""Export wizard: architecture + weights -> load report -> input spec -> targets -> export. Each step
is a core call on the worker (gui.jobs: core.arch, core.inputs.infer_spec, core.export.export); the
panel collects options and shows the LoadReport and the ExportResults. "Check parity…" hands the
artefacts on through `artefacts_ready`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui.jobs import LoadedModel, infer_inputs, load_model, run_export
from gui.models.export_results import NOTES, ExportResultsModel, planned_rows
from gui.models.parity_table import status_color
from gui.views.arch_source import SourceField, kwargs_field, source_problem
from gui.views.export_hf import HFChoice, HFModelRow, LoadedHF, hf_folder, load_hf
from gui.views.export_preprocess import PreprocessBox
from gui.views.export_targets import TargetProbe, TargetsBox
from gui.views.job_bar import JobBar
from gui.views.parts import ErrorBanner, JobPanelState, PathField, hbox, run_job
from gui.views.spec_editor import SpecEditor

if TYPE_CHECKING:  # pragma: no cover
    from core.arch import LoadReport
    from core.export import ExportOptions, ExportResult
    from core.inputs import InputSpec

TRUST_TEXT = ("Loading a TorchScript, .pt2 or pickled model runs code stored in that file. "
              "Tick this only for files you trust.")
WEIGHTS_FILTER = "Checkpoints (*.pt *.pth *.bin *.ckpt *.safetensors *.json);;All files (*)"


class ExportPanel(JobPanelState, QWidget):
    artefacts_ready = Signal(list)  # paths of the exported artefacts, for the checks panel
    finished = Signal(str)  # "done" | "error" | "cancelled" at the end of a load or an export

    def __init__(self, parent: QWidget | None = None, probe: TargetProbe | None = None) -> None:
        super().__init__(parent)
        self._probe = probe  # which export targets work here (default: the app's shared probe)
        self.state = "idle"
        self.loaded: LoadedModel | None = None
        self._build()
        self._update_buttons()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        form = QWidget()
        column = QVBoxLayout(form)
        self.preprocess = PreprocessBox()
        for group in (self._model_group(), self._inputs_group(), self.preprocess,
                      self._targets_group(), self._output_group()):
            column.addWidget(group)
        column.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, minimumWidth=440)
        scroll.setWidget(form)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(self._results_box())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([470, 810])
        self.banner, self.bar, self.status = ErrorBanner(), JobBar(), QLabel(wordWrap=True)
        self.export_button = QPushButton("Export", default=True)
        self.export_button.clicked.connect(self.start_export)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        layout.addLayout(hbox(self.status, self.bar, self.export_button, grow=self.status))

    def _model_group(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.source = SourceField()
        self.source.hint.connect(lambda text: self.status.setText(text))
        self.kwargs = kwargs_field()
        self.hf = HFModelRow()  # a Hugging Face folder's model and task, when the source is one
        self.hf.described.connect(self._on_hf_described)
        self.hf.failed.connect(self._fail)
        self.hf.task_changed.connect(self._model_fields_changed)
        self.source.changed.connect(self._source_changed)
        self.trust = QCheckBox("Trust this file: allow running code stored in it")
        trust_note = self.trust_note = QLabel(TRUST_TEXT, wordWrap=True)
        trust_note.setStyleSheet("color: palette(placeholder-text);")
        self.weights = PathField(placeholder="checkpoint with the weights (optional)",
                                 file_filter=WEIGHTS_FILTER)
        self.non_strict = QCheckBox("Export even if some weights do not fit")
        self.load_button = QPushButton("Load model")
        self.load_button.clicked.connect(lambda: self.load(then=None))
        self.report_title = QLabel(wordWrap=True)
        font = QFont(self.report_title.font())
        font.setBold(True)
        self.report_title.setFont(font)
        self.report_text = QPlainTextEdit(readOnly=True, maximumHeight=90, visible=False)
        self.report_text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        for label, widget in (("Architecture:", self.source), ("", self.hf), ("Arguments:", self.kwargs),
                              ("", self.trust), ("", trust_note), ("Weights:", self.weights),
                              ("", self.non_strict), ("", self.load_button)):
            form.addRow(label, widget)
        form.addRow(self.report_title)
        form.addRow(self.report_text)
        for signal in (self.source.changed, self.kwargs.textChanged, self.weights.changed,
                       self.trust.toggled, self.non_strict.toggled):
            signal.connect(self._model_fields_changed)
        return box

    def _inputs_group(self) -> QGroupBox:
        box = QGroupBox("Inputs")
        self.spec = SpecEditor("empty: guessed from the model's first layer")
        self.infer_button = QPushButton("Infer from model")
        self.infer_button.clicked.connect(self.infer)
        self.spec.toolbar.addWidget(self.infer_button)
        QVBoxLayout(box).addWidget(self.spec)
        return box

    def _targets_group(self) -> QGroupBox:
        box = self.targets_box = TargetsBox(self._probe)
        self.onnx, self.torchscript = box.boxes["onnx"], box.boxes["torchscript"]
        self.pt2, self.aoti, self.executorch = box.boxes["pt2"], box.boxes["aoti"], box.boxes["executorch"]
        self.opset, self.onnx_exporter, self.ts_mode = box.opset, box.onnx_exporter, box.ts_mode
        self.int8 = box.int8
        return box

    def _output_group(self) -> QGroupBox:
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.out_dir = PathField("dir", placeholder="folder for the exported files")
        self.name = QLineEdit("model")
        self.overwrite = QCheckBox("Replace existing files")
        form.addRow("Folder:", self.out_dir)
        form.addRow("File name:", self.name)
        form.addRow("", self.overwrite)
        return box

    def _results_box(self) -> QWidget:
        box = QGroupBox("Results")
        self.results_model = ExportResultsModel(self)
        self.table = QTableView(wordWrap=False)
        self.table.setModel(self.results_model)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NOTES, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._show_row_details)
        self.inputs_label = QLabel()  # one line per input: a wrapped label overflows its row
        self.details = QPlainTextEdit(readOnly=True, maximumHeight=150,
                                      placeholderText="Select a result to see its warnings.")
        self.parity_button = QPushButton("Check parity…")
        self.parity_button.clicked.connect(lambda: self.artefacts_ready.emit(self.check_paths()))
        layout = QVBoxLayout(box)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.inputs_label)
        layout.addWidget(self.details)
        layout.addLayout(hbox(self.parity_button, stretch_at=0))
        return box

    # -- public --------------------------------------------------------------------------------
    def set_checkpoint(self, path: str) -> None:
        """Preset the weights file (e.g. the checkpoint open in the inspect view); a Hugging Face
        folder (or a file in one) also becomes the architecture when none is given yet."""
        folder = hf_folder(str(path))
        if folder and not self.source.text():
            self.source.set_text(folder)
        self.weights.set_text(str(path))

    def targets(self) -> list[str]:
        return self.targets_box.targets()

    def options(self) -> ExportOptions:
        from core.export import ExportOptions

        weights = self.weights.text()
        hf = self.loaded.hf if isinstance(self.loaded, LoadedHF) else None
        named = {"output_names": tuple(hf.output_names), "check_shapes": True} if hf else {}
        return ExportOptions(
            **named, name=self.name.text().strip() or "model",
            opset=self.opset.value() if self.opset.value() != self.opset.minimum() else None,
            onnx_exporter=self.onnx_exporter.currentText(),
            torchscript_mode=self.ts_mode.currentText(),
            quantize="dynamic-int8" if self.int8.isChecked() else None,
            preprocess=self.preprocess.spec() or self.hf.text_preprocess(),
            bake_preprocess=self.preprocess.baked(),
            overwrite=self.overwrite.isChecked(), keep_going=True,
            protect=(Path(weights),) if weights else ())

    @property
    def results(self) -> list[ExportResult]:
        return self.results_model.results

    def artefacts(self) -> list[str]:
        return [r.path for r in self.results if r.ok and r.path]

    def check_paths(self) -> list[str]:
        """What "Check parity…" hands on: a Hugging Face folder first (the reference), then the
        artefacts."""
        return ([self.hf.folder] if self.hf.active() else []) + self.artefacts()

    def check_options(self) -> dict[str, Any] | None:
        """How the checks panel must run the Hugging Face folder to match the export: its task
        and whether the pooling went inside the graph (None when the source is no folder)."""
        return {"task": self.hf.current_task(), "pooling": self.hf.pooled()} if self.hf.active() else None

    def cancel(self) -> None:
        self.bar.cancel()

    def shutdown(self) -> None:
        """Cancel the running job and drop its result (the tab is closing)."""
        self.bar.shutdown()
        self.hf.shutdown()
        self.state = "idle"

    # -- loading -------------------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        if self.hf.active():
            return ("hf", self.hf.folder, self.hf.current_task(), self.weights.text(),
                    not self.non_strict.isChecked(), self.hf.pooled())
        return (self.source.text(), self.kwargs.text(), self.trust.isChecked(), self.weights.text())

    def load(self, then: Callable[[], None] | None = None) -> None:
        """Load the model (unless already loaded from the same fields), then call `then()`."""
        if self.loaded is not None and self.loaded.key == self._key():
            return then() if then is not None else self._end("done", "Model loaded.")
        problem = self._source_problem()
        if problem:
            return self._fail(problem, "")
        self.loaded = None
        self._begin()
        func, args = (load_hf, self._key()[1:]) if self.hf.active() else (load_model, self._key())
        run_job(self.bar, self, func, *args, key=self._key(),
                text="Loading the model…", done=lambda loaded: self._on_loaded(loaded, then),
                failed=self._fail, cancelled=self._on_cancelled)

    def _source_problem(self) -> str:
        return source_problem(self.source.text(), self.trust.isChecked())

    def _on_loaded(self, loaded: LoadedModel, then: Callable[[], None] | None) -> None:
        self.loaded = loaded
        if isinstance(loaded, LoadedHF) and loaded.hf is not None and not self.spec.text():
            self.spec.set_specs(loaded.hf.specs)
        self._show_report(loaded.report)
        report = loaded.report
        if report is not None and not report.ok and not self.non_strict.isChecked():
            error = report.error()
            return self._fail(error.message + " Tick 'Export even if some weights do not fit' to "
                              "export anyway.", error.details or "")
        if then is not None:
            return then()
        self._end("done", "Model loaded.")

    def _show_report(self, report: LoadReport | None) -> None:
        if report is None:
            self.report_title.setText("No weights file: the model is exported as built.")
            self.report_text.setVisible(False)
            return
        verdict = "✓ The weights fit the model" if report.ok else "⚠ The weights do not fully fit"
        self.report_title.setText(f"{verdict}: {report.loaded} tensors loaded "
                                  f"from '{report.section}'.")
        summary = report.summary()
        self.report_text.setPlainText(summary)
        color = status_color(self.palette(), "pass" if report.ok else "warn").name()
        self.report_text.setStyleSheet(f"QPlainTextEdit {{ background: {color}; }}")
        self.report_text.setVisible("\n" in summary)  # more than the count in the title

    def _source_changed(self, text: str) -> None:
        self.hf.set_source(text)
        self.kwargs.setEnabled(not self.hf.active())
        for widget in (self.trust, self.trust_note):  # a folder's weights are data: nothing to trust
            widget.setVisible(not self.hf.active())

    def _on_hf_described(self, choice: HFChoice) -> None:
        """Preselect what fits the folder: its inputs, its name, the exporter Optimum uses."""
        self.spec.set_specs(choice.specs)
        if self.name.text() in ("", "model"):
            self.name.setText(Path(choice.folder).name)
        self.onnx_exporter.setCurrentText("legacy")
        self.status.setText(f"{choice.title()}: inputs from its config; export when ready.")

    def _model_fields_changed(self) -> None:
        if self.loaded is not None and self.loaded.key != self._key():
            self.loaded = None
            self.report_title.setText("")
            self.report_text.setVisible(False)

    # -- inputs and export -----------------------------------------------------------------------
    def infer(self) -> None:
        if self.hf.active() and self.hf.choice is not None:
            self.spec.set_specs(self.hf.choice.specs)
            return self._end("done", f"Inputs of {self.hf.choice.title()}, from its config.")
        self.load(then=lambda: self._infer(then=None))

    def _infer(self, then: Callable[[], None] | None) -> None:
        assert self.loaded is not None
        self._begin()
        run_job(self.bar, self, infer_inputs, self.loaded.model, text="Guessing the inputs…",
                done=lambda specs: self._on_inferred(specs, then), failed=self._fail,
                cancelled=self._on_cancelled)

    def _on_inferred(self, specs: list[InputSpec], then: Callable[[], None] | None) -> None:
        self.spec.set_specs(specs)
        if then is not None:
            return then()
        self._end("done", "Inputs guessed from the model's first layer; check them.")

    def start_export(self) -> None:
        problem = self._export_problem()
        if problem:
            return self._fail(problem, "")
        self.load(then=self._export)

    def _export_problem(self) -> str:
        if not self.targets():
            return "Choose at least one export target."
        if not self.out_dir.text():
            return "Choose the folder the exported files go to."
        if not Path(self.out_dir.text()).is_dir():
            return f"The output folder '{self.out_dir.text()}' does not exist; create it first."
        if self.spec.specs() is None:
            return self.spec.error()
        return self.preprocess.error()

    def _export(self) -> None:
        assert self.loaded is not None
        specs = self.spec.specs()
        if not specs:  # empty: guess the inputs, show them, then export with them
            return self._infer(then=self._export)
        options, targets = self.options(), self.targets()
        self.results_model.set_plan(planned_rows(targets, options.quantize is not None))
        self.details.clear()
        self._begin()
        job = run_job(self.bar, self, run_export, self.loaded.model, specs, targets,
                      self.out_dir.text(), options, text="Exporting", done=self._on_exported,
                      failed=self._fail, cancelled=self._on_cancelled)
        job.progress.connect(lambda done, total, text: self.results_model.set_progress(done))

    def _on_exported(self, results: list[ExportResult]) -> None:
        self.results_model.set_results(results)
        ok = sum(r.ok for r in results)
        warned = sum(bool(r.warnings) for r in results if r.ok)
        text = f"Exported {ok} of {len(results)} artefacts"
        text += f" ({warned} with warnings)." if warned else "."
        self.inputs_label.setText("Inputs: " + "\n".join(s.to_text() for s in self.spec.specs() or []))
        self._end("done" if ok == len(results) else "error", text)

    def _show_row_details(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if len(rows) == 1 and self.results:
            self.details.setPlainText(self.results_model.details(rows[0].row()))

    # -- state -----------------------------------------------------------------------------------
    def _on_cancelled(self) -> None:
        if not self.results:
            self.results_model.clear()
        self._end("cancelled", "Cancelled; nothing was written.")

    def _update_buttons(self) -> None:
        busy = self.state == "running"
        for button in (self.export_button, self.load_button, self.infer_button):
            button.setEnabled(not busy)
        self.parity_button.setEnabled(not busy and bool(self.artefacts()))

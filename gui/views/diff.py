"""Diff view: two files side by side, or a file against a model's expected keys (B as a ModelSource,
as `diff A --model SOURCE`), each side's section picked as --section-a/-b. Keys colour-coded by status
with a filter per status, value columns on request, remap suggestions with "Apply and save…". Every
step (open + diff, section re-diff, value diff, write renamed + re-diff) runs core functions on the
worker (gui.views.diff_jobs); this file only shows their results."""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.convert import ConvertResult
from core.diff.structure import STATUSES, VALUE_STATUSES, DiffResult
from gui.models.diff_table import VALUE_TEXT, DiffTableModel, status_texts
from gui.views.arch_source import source_problem
from gui.views.diff_insight import DiffInsight, row_of_key
from gui.views.diff_jobs import Opened, apply_and_rediff, open_and_diff, rediff_sections, values_diff
from gui.views.diff_model import ModelForm, ModelSource
from gui.views.diff_parts import (
    describe_sides,
    filter_button,
    paint_swatches,
    side_label,
    size_columns,
    table_view,
)
from gui.views.diff_sections import SectionPicker, show_sections, side_column
from gui.views.job_bar import JobBar
from gui.views.remap_suggestions import SuggestionsBox
from gui.widgets import Banner, MessagePage
from gui.worker import Job

FILTER_DELAY_MS = 120
COMPARE_TIP = ("Read both files and compare every pair of tensors with the same shape (max |A−B|, "
               "cosine, identical / close / different)")


class DiffView(QWidget):
    loaded = Signal()
    failed = Signal(str)
    cancelled = Signal()
    values_compared = Signal()
    applied = Signal(object)  # the ConvertResult of the written file
    title_changed = Signal(str)

    def __init__(self, path_a: str | Path, path_b: str | Path | ModelSource,
                 differ: Callable[..., Opened] = open_and_diff, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_b = path_b if isinstance(path_b, ModelSource) else None  # B is a model
        self.path_a, self.path_b = str(path_a), str(path_b)
        self.state = "new"  # new | loading | ready | error | cancelled
        self.opened: Opened | None = None
        self.written: ConvertResult | None = None
        self._differ = differ
        self._side_b: str | ModelSource = self.model_b or self.path_b  # B of the running job
        self._running_text = ""  # what the running job does, for its messages
        self.model = DiffTableModel(parent=self)
        self._build()
        if self.model_b is not None:  # show which model B is, ready to edit
            self.model_form.set_model(self.model_b)
            self.model_button.setChecked(True)
        self._timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS)
        self._timer.timeout.connect(self.apply_filter)
        self.filter.textChanged.connect(lambda _text: self._timer.start())
        self.reload()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.message = MessagePage()
        self.message.action.connect(self.reload)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._content_page())
        self.pages.addWidget(self.message)
        self.jobs = JobBar()
        self.jobs.idle.connect(self._update_buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.jobs)

    def _content_page(self) -> QWidget:
        self.side_a, self.side_b = side_label(), side_label()
        self.section_a, self.section_b = SectionPicker("A"), SectionPicker("B")
        for picker in (self.section_a, self.section_b):
            picker.picked.connect(lambda _name: self.pick_sections())
            picker.setVisible(False)  # until the files are open
        self.model_button = QToolButton(text="Compare with a model…", checkable=True)
        self.model_button.setToolTip("Compare A with what a model's load_state_dict(strict=True) "
                                     "expects, instead of file B")
        self.model_form = ModelForm()
        self.model_form.setVisible(False)
        self.model_button.toggled.connect(self.model_form.setVisible)
        self.model_form.compare_requested.connect(self.set_side_b)
        self.model_form.file_requested.connect(self.choose_file_b)
        sides = QHBoxLayout()
        sides.addLayout(side_column(self.side_a, self.section_a), 1)
        sides.addWidget(QLabel("⟷"), 0, Qt.AlignmentFlag.AlignTop)
        sides.addLayout(side_column(self.side_b, self.section_b), 1)
        sides.addWidget(self.model_button, 0, Qt.AlignmentFlag.AlignTop)
        self.summary = QLabel(wordWrap=True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice = QLabel(wordWrap=True, visible=False)
        self.error = Banner()
        self.table = table_view(self.model)
        self.insight = DiffInsight()  # the module tree beside the table, the plots below it
        self.insight.key_selected.connect(self.select_key)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.insight.beside(self.table))
        splitter.addWidget(self.insight)
        self.suggestions = SuggestionsBox()
        self.suggestions.apply_requested.connect(lambda: self.apply_and_save())
        self.suggestions.selection_changed.connect(self._update_buttons)
        splitter.addWidget(self.suggestions)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([440, 260, 120])
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.compare_button = QPushButton("Compare values")
        self.compare_button.setToolTip(COMPARE_TIP)
        self.compare_button.clicked.connect(self.compare_values)
        summary = QHBoxLayout()
        summary.addWidget(self.summary, 1)
        summary.addWidget(self.compare_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(sides)
        layout.addWidget(self.model_form)
        layout.addLayout(summary)
        for widget in (self.notice, self.error):
            layout.addWidget(widget)
        layout.addLayout(self._filter_row())
        layout.addWidget(splitter, 1)
        return page

    def _filter_row(self) -> QHBoxLayout:
        self.status_buttons = {s: filter_button(self.apply_filter) for s in STATUSES}
        self.value_buttons = {s: filter_button(self.apply_filter) for s in VALUE_STATUSES}
        for button in self.value_buttons.values():
            button.setVisible(False)  # until values are compared
        self.filter = QLineEdit(placeholderText="Filter names (substring or glob)", clearButtonEnabled=True)
        self.filter.setAcceptDrops(False)
        self.filter.setMinimumWidth(160)
        self.count = QLabel()
        row = QHBoxLayout()
        for button in [*self.status_buttons.values(), *self.value_buttons.values()]:
            row.addWidget(button)
        row.addWidget(self.filter, 1)
        row.addWidget(self.count)
        self._paint_swatches()
        return row

    # -- jobs ----------------------------------------------------------------------------------
    def reload(self) -> None:
        self.jobs.shutdown()
        self.state = "loading"
        self._update_sides()
        self.pages.setCurrentIndex(0)
        job = Job(self._differ, self.path_a, self.model_b or self.path_b, parent=self)
        job.succeeded.connect(self._on_opened)
        job.failed.connect(self._on_open_failed)
        job.cancelled.connect(self._on_open_cancelled)
        self.jobs.start(job, f"Comparing {Path(self.path_a).name} with {Path(self.path_b).name}")
        self._update_buttons()

    def set_side_b(self, b: str | ModelSource) -> None:
        """Compare A with another file, or with a model's expected keys (`diff A --model SOURCE`).
        The current diff stays shown until the new one is ready; a problem shows in the banner."""
        if self.jobs.is_busy():
            return
        if isinstance(b, ModelSource):
            self.model_form.set_model(b)
            self.model_button.setChecked(True)
            problem = source_problem(b.source, programs=False)
            if problem:
                self.error.show_message(problem, "")
                self.failed.emit(problem)
                return
        chosen = self._chosen_a()  # A's picked section stays picked; B starts at its default
        job = Job(self._differ, self.path_a, b, parent=self, **({"section_a": chosen} if chosen else {}))
        self._side_b = b
        job.succeeded.connect(self._on_side_b)
        self._run(job, f"Comparing {Path(self.path_a).name} with {Path(str(b)).name}")

    def choose_file_b(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Compare {Path(self.path_a).name} with…",
                                              str(Path(self.path_a).parent))
        if path:
            self.set_side_b(str(Path(path).resolve()))

    def pick_sections(self) -> None:
        """Diff the sections the pickers show (`diff A B --section-a NAME --section-b NAME`; only
        A's against a model): the structure diff again, on the files already open."""
        if self.opened is None or self.jobs.is_busy():
            return
        a = self.section_a.current()
        b = None if self.opened.result.against_model else self.section_b.current()
        job = Job(rediff_sections, self.opened, a, b, parent=self)
        job.succeeded.connect(self._on_sections)
        self._run(job, f"Comparing section '{a}' of A" + (f" with section '{b}' of B" if b else ""))

    def _chosen_a(self) -> str | None:
        """A's compared section when the user picked one other than the default (the weights)."""
        o = self.opened
        shown = o.result.sections[0].section_a if o and o.result.sections else None
        return shown if o and shown != o.a.weights else None

    def compare_values(self) -> None:
        if self.opened is None or self.jobs.is_busy() or self.opened.result.against_model:
            return
        job = Job(values_diff, self.opened, parent=self)
        job.succeeded.connect(self._on_values)
        self._run(job, "Comparing values")

    def apply_and_save(self, destination: str | None = None) -> None:
        """Write A renamed by the checked suggestions to `destination` (asks when None)."""
        rules = self.suggestions.checked_rules()
        if self.opened is None or not rules or self.jobs.is_busy():
            return
        if destination is None:
            a = Path(self.path_a)
            destination, _ = QFileDialog.getSaveFileName(
                self, "Save A renamed as", str(a.with_name(f"{a.stem}.remapped.safetensors")),
                "safetensors (*.safetensors)")
            if not destination:
                return
        if os.path.abspath(destination) == os.path.abspath(self.path_b):
            self.error.show_message("Choose another name: that is file B, the file compared with.", "")
            return
        job = Job(apply_and_rediff, self.opened, rules, destination, parent=self)
        job.succeeded.connect(self._on_applied)
        self._run(job, f"Writing {Path(destination).name}")

    def _run(self, job: Job, text: str) -> None:
        self.error.setVisible(False)
        # Job signals go to bound methods, never to lambdas holding the view: a lambda would keep a
        # view nobody else holds alive until its finished job is deleted, and the view would then
        # be deleted inside its own child's destructor (a crash).
        self._running_text = text
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(self._on_job_cancelled)
        self.jobs.start(job, text)
        self._update_buttons()

    def cancel(self) -> None:
        self.jobs.cancel()

    def shutdown(self) -> None:
        self.insight.cancel()
        self.jobs.shutdown()

    def is_busy(self) -> bool:
        return self.jobs.is_busy()

    # -- results -------------------------------------------------------------------------------
    def _on_opened(self, opened: Opened) -> None:
        self.state = "ready"
        self._show(opened)
        self.loaded.emit()

    def _on_open_failed(self, message: str, details: str) -> None:
        self.state = "error"
        self.message.show_message(message, details, "Try again")
        self.pages.setCurrentWidget(self.message)
        self.failed.emit(message)

    def _on_open_cancelled(self) -> None:
        self.state = "cancelled"
        self.message.show_message("The comparison was cancelled.", "", "Compare again", error=False)
        self.pages.setCurrentWidget(self.message)
        self.cancelled.emit()

    def _on_side_b(self, opened: Opened) -> None:
        b = self._side_b
        self.model_b = b if isinstance(b, ModelSource) else None
        self.path_b = str(b)
        self.state = "ready"
        self.notice.setVisible(False)
        self._show(opened)
        self.title_changed.emit(self.title())
        self.loaded.emit()

    def _on_sections(self, opened: Opened) -> None:
        self.notice.setVisible(False)
        self._show(opened)
        self.loaded.emit()

    def _on_values(self, opened: Opened) -> None:
        self._show(opened)
        self.values_compared.emit()

    def _on_applied(self, done: tuple[ConvertResult, Opened]) -> None:
        self.written, opened = done
        self.path_a = str(opened.a.path)
        self._show(opened)
        v = self.written.verification
        self._show_notice(f"Saved A renamed as <b>{html.escape(opened.a.path.name)}</b>: "
                          f"{self.written.tensors_written} tensors, verified by re-reading them "
                          f"({v['method']}): {'passed' if v['passed'] else 'FAILED'}. "
                          "Below, the saved file (A) compared with B.")
        self.title_changed.emit(self.title())
        self.applied.emit(self.written)

    def _on_job_failed(self, message: str, details: str) -> None:
        show_sections(self.section_a, self.section_b, self.opened)  # back to those shown
        self.error.show_message(message, details)
        self.failed.emit(message)

    def _on_job_cancelled(self) -> None:
        show_sections(self.section_a, self.section_b, self.opened)
        self._show_notice(f"{self._running_text} was cancelled; nothing was changed.")

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(True)

    def _show(self, opened: Opened) -> None:
        self.opened = opened
        result = opened.result
        self._update_sides()
        show_sections(self.section_a, self.section_b, opened)
        self.summary.setText(result.summary())
        self.model.set_result(result)
        self._update_filter_buttons(result)
        self.apply_filter()
        size_columns(self.table)
        self.insight.set_opened(opened)
        self.suggestions.set_suggestions(result.suggestions, differs=not result)
        self._update_buttons()

    def _update_sides(self) -> None:
        describe_sides((self.side_a, self.side_b), (self.path_a, self.path_b), self.opened,
                       self.model_b.kwargs if self.model_b else "")

    def _update_filter_buttons(self, result: DiffResult) -> None:
        texts = status_texts(result.against_model)
        for status, n in result.totals.items():
            self.status_buttons[status].setText(f"{texts[status]}  {n:,}")
        for status, n in result.value_totals.items():
            button = self.value_buttons[status]
            button.setText(f"{VALUE_TEXT[status]}  {n:,}")
            button.setVisible(result.values_compared and (n > 0 or status != "skipped"))

    def _update_buttons(self) -> None:
        idle = self.state == "ready" and not self.jobs.is_busy()
        model = self.opened is not None and self.opened.result.against_model
        self.compare_button.setEnabled(idle and not model)
        self.compare_button.setToolTip(COMPARE_TIP if not model else "A model built on the meta "
                                       "device has no values to compare.")
        self.suggestions.set_idle(idle)
        self.model_form.set_idle(idle)
        self.section_a.set_idle(idle)
        self.section_b.set_idle(idle)

    def apply_filter(self) -> None:
        self._timer.stop()
        statuses = {s for s, b in self.status_buttons.items() if b.isChecked()}
        values = {s for s, b in self.value_buttons.items() if b.isChecked()}
        self.model.set_filter(statuses, values, self.filter.text())
        shown, total = self.model.rowCount(), self.model.total_count()
        self.count.setText(f"{shown:,} of {total:,} keys" if shown != total else f"{total:,} keys")

    def select_key(self, name: str) -> None:
        """Select the row of key `name`, showing every key first if the filters hide it."""
        if row_of_key(self.model, name) is None:
            self.filter.clear()
            for button in [*self.status_buttons.values(), *self.value_buttons.values()]:
                button.setChecked(True)
            self.apply_filter()
        self.table.selectRow(row_of_key(self.model, name) or 0)

    def focus_filter(self) -> None:
        self.filter.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter.selectAll()

    def title(self) -> str:
        return f"{Path(self.path_a).name} ⟷ {Path(self.path_b).name}"

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.model.refresh_colours()
            self._paint_swatches()
        super().changeEvent(event)

    def _paint_swatches(self) -> None:
        paint_swatches(self.status_buttons, self.value_buttons, self.palette())


"""Diff view: two files side by side. Keys colour-coded by status with a filter per status, value
columns on request, remap suggestions with "Apply and save…". Every step (open + diff, value diff,
write renamed + re-diff) runs core functions on the worker; this file only shows their results."""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.convert import ConvertResult
from core.diff import STATUSES, VALUE_STATUSES, DiffResult, diff_checkpoints, open_labelled, open_pair
from core.model import Checkpoint
from core.progress import Progress
from core.remap import RemapRule, write_remapped
from core.report import human_bytes
from gui.models import diff_table
from gui.models.diff_table import STATUS_RGB, STATUS_TEXT, VALUE_RGB, VALUE_TEXT, DiffTableModel
from gui.views.job_bar import JobBar
from gui.views.remap_suggestions import SuggestionsBox
from gui.widgets import Banner, MessagePage
from gui.worker import Job

FILTER_DELAY_MS = 120
SAMPLES = {diff_table.STATUS: "Shape mismatch", diff_table.SHAPE_A: "[32000, 4096]",
           diff_table.DTYPE_A: "bfloat16", diff_table.SHAPE_B: "[32000, 4096]",
           diff_table.DTYPE_B: "bfloat16", diff_table.VALUES: "Identical",
           diff_table.MAX_ABS: "1.23e-05", diff_table.COSINE: "0.999999"}


@dataclass
class Opened:
    """Both files, their diff, and their sizes on disk (read on the worker)."""

    a: Checkpoint
    b: Checkpoint
    result: DiffResult
    size_a: int
    size_b: int


def open_and_diff(path_a: str, path_b: str, progress: Progress | None = None) -> Opened:
    """The worker's job: open both files (headers only) and diff their keys, with suggestions."""
    a, b = open_pair(path_a, path_b)
    return diff_pair(a, b, progress=progress)


def diff_pair(a: Checkpoint, b: Checkpoint, progress: Progress | None = None, **options: object) -> Opened:
    result = diff_checkpoints(a, b, suggest=True, progress=progress, **options)  # type: ignore[arg-type]
    return Opened(a, b, result, _size(a.path), _size(b.path))


def values_diff(opened: Opened, progress: Progress | None = None) -> Opened:
    """The same sections again, with the value diff (reads both files)."""
    pairs = [(s.section_a, s.section_b) for s in opened.result.sections]
    return diff_pair(opened.a, opened.b, progress, sections=pairs, values=True)


def apply_and_rediff(opened: Opened, rules: Sequence[RemapRule], destination: str,
                     progress: Progress | None = None) -> tuple[ConvertResult, Opened]:
    """Write A renamed by `rules` (verified, atomic) and diff the written file against B."""
    section = opened.result.sections[0].section_a
    written = write_remapped(opened.a, rules, destination, section=section, overwrite=True,
                             progress=progress)
    a = open_labelled(written.outputs[-1]["path"], "A")
    return written, diff_pair(a, opened.b, progress)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class DiffView(QWidget):
    loaded = Signal()
    failed = Signal(str)
    cancelled = Signal()
    values_compared = Signal()
    applied = Signal(object)  # the ConvertResult of the written file
    title_changed = Signal(str)

    def __init__(self, path_a: str | Path, path_b: str | Path,
                 differ: Callable[..., Opened] = open_and_diff, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path_a, self.path_b = str(path_a), str(path_b)
        self.state = "new"  # new | loading | ready | error | cancelled
        self.opened: Opened | None = None
        self.written: ConvertResult | None = None
        self._differ = differ
        self.model = DiffTableModel(parent=self)
        self._build()
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
        self.side_a, self.side_b = _side_label(), _side_label()
        sides = QHBoxLayout()
        sides.addWidget(self.side_a, 1)
        sides.addWidget(QLabel("⟷"))
        sides.addWidget(self.side_b, 1)
        self.summary = QLabel(wordWrap=True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice = QLabel(wordWrap=True, visible=False)
        self.error = Banner()
        self.table = _table_view(self.model)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        self.suggestions = SuggestionsBox()
        self.suggestions.apply_requested.connect(lambda: self.apply_and_save())
        self.suggestions.selection_changed.connect(self._update_buttons)
        splitter.addWidget(self.suggestions)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([520, 170])
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.compare_button = QPushButton("Compare values")
        self.compare_button.setToolTip("Read both files and compare every pair of tensors with the "
                                       "same shape (max |A−B|, cosine, identical / close / different)")
        self.compare_button.clicked.connect(self.compare_values)
        summary = QHBoxLayout()
        summary.addWidget(self.summary, 1)
        summary.addWidget(self.compare_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(sides)
        layout.addLayout(summary)
        for widget in (self.notice, self.error):
            layout.addWidget(widget)
        layout.addLayout(self._filter_row())
        layout.addWidget(splitter, 1)
        return page

    def _filter_row(self) -> QHBoxLayout:
        self.status_buttons = {s: _filter_button(self.apply_filter) for s in STATUSES}
        self.value_buttons = {s: _filter_button(self.apply_filter) for s in VALUE_STATUSES}
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
        job = Job(self._differ, self.path_a, self.path_b, parent=self)
        job.succeeded.connect(self._on_opened)
        job.failed.connect(self._on_open_failed)
        job.cancelled.connect(self._on_open_cancelled)
        self.jobs.start(job, f"Comparing {Path(self.path_a).name} with {Path(self.path_b).name}")
        self._update_buttons()

    def compare_values(self) -> None:
        if self.opened is None or self.jobs.is_busy():
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
        job.failed.connect(self._on_job_failed)
        job.cancelled.connect(lambda: self._show_notice(f"{text} was cancelled; nothing was changed."))
        self.jobs.start(job, text)
        self._update_buttons()

    def cancel(self) -> None:
        self.jobs.cancel()

    def shutdown(self) -> None:
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
        self.error.show_message(message, details)
        self.failed.emit(message)

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(True)

    def _show(self, opened: Opened) -> None:
        self.opened = opened
        result = opened.result
        self._update_sides()
        self.summary.setText(result.summary())
        self.model.set_result(result)
        self._update_filter_buttons(result)
        self.apply_filter()
        _size_columns(self.table)
        self.suggestions.set_suggestions(result.suggestions, differs=not result)
        self._update_buttons()

    def _update_sides(self) -> None:
        o = self.opened
        for label, side, path, fmt, size in (
                (self.side_a, "A", self.path_a, o and o.a.format, o and o.size_a),
                (self.side_b, "B", self.path_b, o and o.b.format, o and o.size_b)):
            info = f"{fmt} · {human_bytes(size or 0)} on disk" if o else "Opening…"
            label.setText(f"<b>{side}</b>&nbsp; {html.escape(Path(path).name)}<br>"
                          f"<span style='color:#888888'>{info}</span>")
            label.setToolTip(path)

    def _update_filter_buttons(self, result: DiffResult) -> None:
        for status, n in result.totals.items():
            self.status_buttons[status].setText(f"{STATUS_TEXT[status]}  {n:,}")
        for status, n in result.value_totals.items():
            button = self.value_buttons[status]
            button.setText(f"{VALUE_TEXT[status]}  {n:,}")
            button.setVisible(result.values_compared and (n > 0 or status != "skipped"))

    def _update_buttons(self) -> None:
        idle = self.state == "ready" and not self.jobs.is_busy()
        self.compare_button.setEnabled(idle)
        self.suggestions.set_idle(idle)

    def apply_filter(self) -> None:
        self._timer.stop()
        statuses = {s for s, b in self.status_buttons.items() if b.isChecked()}
        values = {s for s, b in self.value_buttons.items() if b.isChecked()}
        self.model.set_filter(statuses, values, self.filter.text())
        shown, total = self.model.rowCount(), self.model.total_count()
        self.count.setText(f"{shown:,} of {total:,} keys" if shown != total else f"{total:,} keys")

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
        for statuses, rgbs in ((self.status_buttons, STATUS_RGB), (self.value_buttons, VALUE_RGB)):
            for status, button in statuses.items():
                button.setIcon(_swatch_icon(diff_table.swatch(rgbs[status], self.palette())))


def _side_label() -> QLabel:
    label = QLabel(textFormat=Qt.TextFormat.RichText)
    label.setFrameShape(QFrame.Shape.StyledPanel)
    label.setMargin(6)
    return label


def _filter_button(slot: Callable[[], None]) -> QToolButton:
    button = QToolButton()
    button.setCheckable(True)
    button.setChecked(True)
    button.setAutoRaise(True)  # checked: framed; unchecked: flat
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setToolTip("Show or hide the keys with this status")
    button.toggled.connect(lambda _on: slot())
    return button


def _swatch_icon(colour: QColor) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(colour)
    return QIcon(pixmap)


def _table_view(model: DiffTableModel) -> QTableView:
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 6)
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    view.setSortingEnabled(True)
    view.horizontalHeader().setSortIndicatorClearable(True)
    return view


def _size_columns(view: QTableView) -> None:
    """The name column takes the spare width; the others fit their widest expected text."""
    header, metrics = view.horizontalHeader(), view.fontMetrics()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(diff_table.NAME, QHeaderView.ResizeMode.Stretch)
    for column in range(1, view.model().columnCount()):
        title = str(view.model().headerData(column, Qt.Orientation.Horizontal))
        width = max(metrics.horizontalAdvance(SAMPLES[column]), metrics.horizontalAdvance(title))
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(column, width + 30)

"""The convert panel's precision check before a cast to float16 / bfloat16: core's
`precision_report` (core.convert.precision) runs on its own worker as soon as such a dtype is chosen,
and the box shows what the cast would do before the user clicks Convert — values that would become
infinity (those tensors named), values flushed to zero or made subnormal, the rounding error. An
overflowing cast is refused unless "Allow overflow" is ticked (core refuses it too)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.views.job_bar import JobBar
from gui.worker import Job

if TYPE_CHECKING:  # pragma: no cover
    from core.convert import ConvertOptions
    from core.convert.precision import PrecisionReport
    from core.model import Checkpoint

HALF = {"fp16": "float16", "bf16": "bfloat16"}
COLUMNS = ("Tensor", "From", "→ infinity", "→ zero", "Subnormal", "Largest |x|", "Max rel. error")
RISK, GREY = "#d0453a", "#888888"
SHOWN_ROWS = 200  # the riskiest tensors; the totals count them all


class PrecisionBox(QGroupBox):
    """Hidden unless the chosen dtype is float16 / bfloat16. `changed` fires when the report, its
    state or the "Allow overflow" tick changes (the panel then updates its Convert button)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Before the cast", parent)
        self.report: PrecisionReport | None = None
        self.dtype: str | None = None
        self.error = ""
        self._key: tuple[Any, ...] | None = None  # (path, dtype, options) the report is for
        self.summary = QLabel(wordWrap=True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.allow = QCheckBox("Allow overflow (those values are written as infinity)")
        self.allow.toggled.connect(self.changed)
        self.hint = QLabel(wordWrap=True)
        self.hint.setStyleSheet(f"color: {RISK}")
        self.changed.connect(lambda: self.hint.setText(self.blocker() if self.report else ""))
        self.jobs = JobBar()
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.allow)
        layout.addWidget(self.hint)
        layout.addWidget(self.jobs)
        self.setVisible(False)

    def refresh(self, checkpoint: Checkpoint | None, dtype: str | None,
                options: ConvertOptions) -> None:
        """Check the cast of `checkpoint` to `dtype` with `options`, unless already checked."""
        self.dtype = dtype
        self.setVisible(dtype in HALF)
        key = (str(checkpoint.path), dtype, options) if checkpoint is not None else None
        if dtype not in HALF or key == self._key:
            self.changed.emit()
            return
        self.jobs.shutdown()  # a report for older settings is of no use
        self._key, self.report, self.error = key, None, ""
        self._show_rows(None)
        if checkpoint is None:
            self.summary.setText("The cast is checked once the file has been read.")
            self.changed.emit()
            return
        from core.convert.precision import precision_report

        self.summary.setText(f"Checking what the cast to {HALF[dtype]} does to the values…")
        job = Job(precision_report, checkpoint, dtype, options, parent=self)
        job.succeeded.connect(self._on_report)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self.jobs.start(job, f"Checking the cast to {HALF[dtype]}")
        self.changed.emit()

    def is_current(self, checkpoint: Checkpoint | None, dtype: str | None,
                   options: ConvertOptions) -> bool:
        """Whether the report shown is for these settings (no report is needed without a cast)."""
        return dtype not in HALF or (checkpoint is not None
                                     and self._key == (str(checkpoint.path), dtype, options))

    def blocker(self) -> str:
        """Why Convert must wait ("" when it may go ahead)."""
        if self.dtype not in HALF or self.error:
            return ""  # no cast to check, or the check failed (core still refuses an overflow)
        if self.report is None:
            return "Wait for the precision check to finish."
        if self.report.overflow and not self.allow.isChecked():
            return (f"Casting to {self.report.dtype} would turn {self.report.overflow:,} value(s) "
                    "into infinity; tick 'Allow overflow' to convert anyway, or keep a wider type.")
        return ""

    def shutdown(self) -> None:
        self.jobs.shutdown()

    def _on_report(self, report: PrecisionReport) -> None:
        self.report = report
        self.summary.setText(summary_html(report))
        self._show_rows(report)
        self.changed.emit()

    def _on_failed(self, message: str, _details: str) -> None:
        self.error = message
        self._key = None  # try again next time
        self.summary.setText(f"The precision check failed: {html.escape(message)}")
        self.changed.emit()

    def _on_cancelled(self) -> None:
        self._key = None
        self.summary.setText("The precision check was cancelled; choose the data type again to "
                             "run it.")
        self.changed.emit()

    def _show_rows(self, report: PrecisionReport | None) -> None:
        rows = sorted((t for t in report.tensors if t.at_risk), key=lambda t: (
            -t.overflow, -t.flushed, -t.subnormal)) if report is not None else []
        self.table.setRowCount(0)
        self.table.setVisible(bool(rows))
        for t in rows[:SHOWN_ROWS]:
            row = self.table.rowCount()
            self.table.insertRow(row)
            cells = (t.name, t.source_dtype, f"{t.overflow:,}", f"{t.flushed:,}", f"{t.subnormal:,}",
                     "—" if t.max_abs is None else f"{t.max_abs:.4g}", _percent(t.max_rel_error))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2 and t.overflow:
                    item.setForeground(_brush(RISK))
                self.table.setItem(row, column, item)


def summary_html(report: PrecisionReport) -> str:
    """The report in a few plain sentences."""
    n = len(report.tensors)
    lines = [f"Casting {n:,} tensor{'s' * (n != 1)} ({report.numel:,} values) to {report.dtype}: "
             f"rounding changes a value by up to {_percent(report.max_rel_error)} "
             f"(mean {_percent(report.mean_rel_error)})."]
    if report.overflow:
        names = ", ".join(f"'{html.escape(name)}'" for name in report.overflowing[:5])
        more = f" and {len(report.overflowing) - 5} more" if len(report.overflowing) > 5 else ""
        lines.append(f"<b style='color:{RISK}'>{report.overflow:,} value(s) are larger than "
                     f"{report.max_finite:.6g} and would become infinity</b>, in {names}{more}.")
    if report.flushed or report.subnormal:
        lines.append(f"{report.flushed:,} small value(s) would become zero and {report.subnormal:,} "
                     f"would lose precision (below {report.smallest_normal:.3g}).")
    if not (report.overflow or report.flushed or report.subnormal):
        lines.append(f"<span style='color:{GREY}'>No value overflows, becomes zero or loses its "
                     "normal precision.</span>")
    return "<br>".join(lines)


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def _brush(color: str) -> Any:
    from PySide6.QtGui import QBrush, QColor

    return QBrush(QColor(color))

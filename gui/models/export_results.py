"""The export results table: while an export runs, one row per planned artefact with its state
(waiting / running / checked, from the core progress count); then one row per core ExportResult,
coloured pass / warn (has warnings) / fail (error), with the full text in tooltips and `details`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QApplication

from core.report import human_bytes
from gui.models.columns import TitledColumns
from gui.models.parity_table import status_color

if TYPE_CHECKING:  # pragma: no cover
    from core.export import ExportResult

COLUMNS = ("Target", "Status", "File", "Size", "Exporter", "Max diff", "Time", "Notes")
NOTES = len(COLUMNS) - 1
_Index = QModelIndex | QPersistentModelIndex


def planned_rows(targets: list[str], quantize: bool) -> list[tuple[str, int]]:
    """(label, progress count when it is done) per artefact, in the order core.export writes them
    (one step for the eager run, each target's STAGES, then the int8 artefacts)."""
    from core.export import QUANTIZED, TARGETS
    from core.export import quantize as int8

    rows, done = [], 1
    for target in targets:
        done += TARGETS[target].STAGES
        rows.append((target, done))
    for target in targets if quantize else []:
        if target in QUANTIZED:
            done += int8.STAGES
            rows.append((f"{target} (int8)", done))
    return rows


class ExportResultsModel(TitledColumns, QAbstractTableModel):
    COLUMNS = COLUMNS

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.results: list[ExportResult] = []
        self._plan: list[tuple[str, int]] = []
        self._done = 0

    def set_plan(self, plan: list[tuple[str, int]]) -> None:
        self.beginResetModel()
        self.results, self._plan, self._done = [], plan, 0
        self.endResetModel()

    def set_progress(self, done: int) -> None:
        self._done = done
        if self._plan and not self.results:
            self.dataChanged.emit(self.index(0, 1), self.index(len(self._plan) - 1, 1))

    def set_results(self, results: list[ExportResult]) -> None:
        self.beginResetModel()
        self.results, self._plan = list(results), []
        self.endResetModel()

    def clear(self) -> None:
        self.set_results([])

    def status(self, row: int) -> str:
        """pass | warn | fail for a result; waiting | running | checked while planned."""
        if self.results:
            r = self.results[row]
            return "fail" if not r.ok else ("warn" if r.warnings else "pass")
        last = self._plan[row][1]
        first = self._plan[row - 1][1] if row else 1
        return "checked" if self._done >= last else ("running" if self._done >= first
                                                      else "waiting")

    def details(self, row: int) -> str:
        r = self.results[row]
        lines = [f"{r.target}: {r.path}" if r.ok else f"{r.target}: failed"]
        if r.error:
            lines += [str(r.error.get("message")), str(r.error.get("details") or "")]
        lines += [f"warning: {w}" for w in r.warnings]
        if r.fallback_reason:
            lines.append(f"dynamo exporter not used: {r.fallback_reason}")
        if r.max_abs_diff is not None:
            lines.append(f"max abs diff vs {r.reference}: {r.max_abs_diff:.3g}")
        return "\n".join(lines)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.results or self._plan)


    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._texts(row)[col]
        if role == Qt.ItemDataRole.BackgroundRole and self.results:
            return status_color(QApplication.palette(), self.status(row))
        if role == Qt.ItemDataRole.ToolTipRole and self.results:
            r = self.results[row]
            return r.path if col == 2 else (self.details(row) if col == NOTES else None)
        return None

    def _texts(self, row: int) -> list[str]:
        if not self.results:
            return [self._plan[row][0], self.status(row)] + [""] * (len(COLUMNS) - 2)
        r = self.results[row]
        label = r.target + (" (int8)" if r.quantized else "")
        if not r.ok:
            message = (r.error or {}).get("message") or "failed"
            return [label, "failed", "", "", "", "", "", str(message)]
        how = r.exporter + (f", opset {r.opset}" if r.opset else "")
        how += " (fallback)" if r.fallback_reason else ""
        count = len(r.warnings)
        notes = f"⚠ {count} warning{'s' * (count > 1)}" if count else "verified against the model"
        diff = "—" if r.max_abs_diff is None else f"{r.max_abs_diff:.2g}"
        return [label, "ok", Path(r.path or "").name, human_bytes(r.size), how, diff,
                f"{r.seconds:.1f} s", notes]

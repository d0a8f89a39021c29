"""The parity table: one row per (input shape, output) of a core ParityResult, coloured pass/fail.

A shape whose run failed (the runner raised) is one row with the error. Colours come from the
palette (`status_color`), so they read in light and dark themes alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from gui.models.columns import TitledColumns

if TYPE_CHECKING:  # pragma: no cover - numpy is loaded with the first check, not at start-up
    from core.checks.parity import CaseResult, ParityResult

COLUMNS = ("Input shape", "Output", "Result", "Max abs", "Max rel", "Mean abs", "Cosine",
           "Outside tol", "atol / rtol")
RESULT = 2
STATUS_RGB = {"pass": (46, 160, 67), "fail": (218, 54, 51), "error": (218, 54, 51),
              "warn": (227, 160, 8)}
_Index = QModelIndex | QPersistentModelIndex


def status_color(palette: QPalette, status: str) -> QColor:
    """An opaque tint of the palette's base colour for `status` (pass / fail / error / warn)."""
    base = palette.color(QPalette.ColorRole.Base)
    r, g, b = STATUS_RGB[status]
    mix = 0.22 if base.lightness() > 128 else 0.38  # dark themes need a stronger tint
    return QColor(round(base.red() + (r - base.red()) * mix),
                  round(base.green() + (g - base.green()) * mix),
                  round(base.blue() + (b - base.blue()) * mix))


def legend_html(palette: QPalette, statuses: tuple[str, ...] = ("pass", "fail", "error")) -> str:
    """Colour chips naming each status, for a QLabel next to a coloured table."""
    chips = [f"<span style='background:{status_color(palette, s).name()}'>&nbsp;&nbsp;&nbsp;&nbsp;"
             f"</span>&nbsp;{s}" for s in statuses]
    return "&nbsp;&nbsp;&nbsp;".join(chips)


def _g(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


class ParityTableModel(TitledColumns, QAbstractTableModel):
    COLUMNS = COLUMNS

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[CaseResult, Any]] = []  # (case, OutputComparison | None)
        self.result: ParityResult | None = None

    def set_result(self, result: ParityResult | None) -> None:
        self.beginResetModel()
        self.result = result
        self._rows = []
        for case in result.cases if result is not None else []:
            if case.error is not None or not case.outputs:
                self._rows.append((case, None))
            self._rows += [(case, o) for o in case.outputs]
        self.endResetModel()

    def counts(self) -> tuple[int, int]:
        """(passing rows, all rows)."""
        return sum(self.status(r) == "pass" for r in range(len(self._rows))), len(self._rows)

    def status(self, row: int) -> str:
        case, out = self._rows[row]
        if out is None:
            return "error" if case.error else "fail"
        return "pass" if out.passed else "fail"

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)


    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == Qt.ItemDataRole.BackgroundRole:
            return status_color(QApplication.palette(), self.status(row))
        if role == Qt.ItemDataRole.ToolTipRole:
            case, out = self._rows[row]
            saved = f"Inputs and outputs saved in {case.saved}" if case.saved else ""
            return "\n".join(filter(None, (out.message if out is not None else case.error,
                                            saved))) or None
        if role == Qt.ItemDataRole.TextAlignmentRole and col > RESULT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, row: int, col: int) -> str:
        case, out = self._rows[row]
        if col == 0:
            return case.label
        if col == RESULT:
            return {"pass": "pass", "fail": "FAIL", "error": "error"}[self.status(row)]
        if out is None:
            return (case.error or "no outputs") if col == 1 else ""
        name = out.name if out.name == out.candidate_name else f"{out.name} / {out.candidate_name}"
        return (name, "", _g(out.max_abs_diff), _g(out.max_rel_diff), _g(out.mean_abs_diff),
                _g(out.cosine_similarity, 6), f"{out.outside_count} ({out.outside_percent:.3g}%)",
                f"{_g(out.atol)} / {_g(out.rtol)}")[col - 1]

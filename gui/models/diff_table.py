"""The diff table: one row per KeyDiff of a DiffResult, filtered and sorted in the model itself.

Rows are indices into the result's key list, so 200k keys cost a few lists of ints, not widgets.
Row colours are the status colours blended into the palette's base colour, so they read well in
light and dark themes alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, SHAPE, DiffResult, KeyDiff
from core.diff.values import CLOSE, DIFFERENT, IDENTICAL, SKIPPED
from core.report import shape_text
from gui.models.tensor_table import name_matcher, natural_key

BASE_COLUMNS = ("Name", "Status", "Shape A", "Dtype A", "Shape B", "Dtype B")
VALUE_COLUMNS = ("Values", "Max |A−B|", "Cosine")
NAME, STATUS, SHAPE_A, DTYPE_A, SHAPE_B, DTYPE_B, VALUES, MAX_ABS, COSINE = range(9)
KEY_ROLE = Qt.ItemDataRole.UserRole  # data(index, KEY_ROLE) -> the KeyDiff
STATUS_TEXT = {ONLY_A: "Only in A", ONLY_B: "Only in B", SHAPE: "Shape mismatch",
               DTYPE: "Dtype mismatch", SAME: "Equal"}
# B is a model: load_state_dict's words (A's extra keys are "unexpected", the model's are "missing")
MODEL_STATUS_TEXT = STATUS_TEXT | {ONLY_A: "Unexpected", ONLY_B: "Missing", SHAPE: "Size mismatch"}
VALUE_TEXT = {DIFFERENT: "Different", CLOSE: "Close", IDENTICAL: "Identical", SKIPPED: "Skipped"}
STATUS_RGB = {ONLY_A: (224, 72, 56), ONLY_B: (46, 160, 67), SHAPE: (150, 80, 220),
              DTYPE: (230, 160, 20), SAME: None}
VALUE_RGB = {DIFFERENT: (224, 72, 56), CLOSE: (230, 160, 20), IDENTICAL: None, SKIPPED: None}
TINT = 0.30  # how much of the status colour goes into a row background
_Index = QModelIndex | QPersistentModelIndex


def tint(rgb: tuple[int, int, int] | None, palette: QPalette | None = None,
         amount: float = TINT) -> QColor | None:
    """`rgb` blended into the palette's base colour (None for no colour)."""
    if rgb is None:
        return None
    base = (palette or QApplication.palette()).color(QPalette.ColorRole.Base)
    mix = [round(c * amount + b * (1 - amount)) for c, b in zip(rgb, base.getRgb()[:3], strict=True)]
    return QColor(*mix)


def status_texts(against_model: bool) -> dict[str, str]:
    """The word for each status: load_state_dict's when B is a model's expected keys."""
    return MODEL_STATUS_TEXT if against_model else STATUS_TEXT


def swatch(rgb: tuple[int, int, int] | None, palette: QPalette | None = None) -> QColor:
    """The legend colour of a status: stronger than the row tint, still palette-aware."""
    colour = tint(rgb, palette, 0.75)
    return colour if colour is not None else (palette or QApplication.palette()).color(
        QPalette.ColorRole.Base)


class DiffTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._keys: list[KeyDiff] = []
        self._rows: list[int] = []
        self._values = False
        self._texts = STATUS_TEXT
        self._statuses: set[str] | None = None  # None = every status
        self._value_statuses: set[str] | None = None
        self._matcher: Callable[[str], bool] | None = None
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self._order: list[int] | None = None  # None: not computed yet
        self._colours: dict[str, QColor | None] = {}
        self.refresh_colours()

    # -- content -----------------------------------------------------------------------------
    def set_result(self, result: DiffResult | None) -> None:
        self.beginResetModel()
        # `result is None`, not `not result`: a DiffResult is falsy when the files differ
        self._keys = [k for s in result.sections for k in s.keys] if result is not None else []
        self._values = result is not None and result.values_compared
        self._texts = status_texts(result is not None and result.against_model)
        self._order = None
        self._rows = self._compute_rows()
        self.endResetModel()

    def set_filter(self, statuses: set[str] | None = None, value_statuses: set[str] | None = None,
                   text: str = "") -> None:
        """Show keys whose status is in `statuses`, value status in `value_statuses` (keys without
        values, e.g. only in A, always pass it) and name matches `text` (substring or glob); None
        = no condition."""
        self.beginResetModel()
        self._statuses, self._value_statuses = statuses, value_statuses
        self._matcher = name_matcher(text)
        self._rows = self._compute_rows()
        self.endResetModel()

    def refresh_colours(self) -> None:
        """Recompute the row colours from the current palette (after a theme change)."""
        self._colours = {s: tint(rgb) for s, rgb in STATUS_RGB.items()}
        self._colours |= {f"v:{s}": tint(rgb, amount=0.45) for s, rgb in VALUE_RGB.items()}
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._rows) - 1,
                                                                 self.columnCount() - 1))

    def key(self, row: int) -> KeyDiff:
        return self._keys[self._rows[row]]

    def total_count(self) -> int:
        return len(self._keys)

    def has_values(self) -> bool:
        return self._values

    def _compute_rows(self) -> list[int]:
        keys, statuses, values, match = self._keys, self._statuses, self._value_statuses, self._matcher
        rows = self._sorted_order()
        if statuses is not None:
            rows = [i for i in rows if keys[i].status in statuses]
        if values is not None and self._values:
            rows = [i for i in rows if (v := keys[i].values) is None or v.status in values]
        if match is not None:
            rows = [i for i in rows if match(keys[i].name) or match(keys[i].name_a or "")]
        return rows

    def _sorted_order(self) -> list[int]:
        """Every key's index in the current sort order (computed once per sort, not per filter)."""
        if self._order is None:
            column, order = self._sort
            key = self._sort_key(column)
            self._order = list(range(len(self._keys)))
            if key is not None:
                self._order.sort(key=key, reverse=order == Qt.SortOrder.DescendingOrder)
        return self._order

    def _sort_key(self, column: int) -> Callable[[int], Any] | None:
        k = self._keys
        rank = {s: i for i, s in enumerate(STATUS_TEXT)}
        value_rank = {s: i for i, s in enumerate(VALUE_TEXT)}

        def metric(i: int, attr: str, missing: float) -> float:
            v = k[i].values
            return missing if v is None else getattr(v, attr)

        keys: dict[int, Callable[[int], Any]] = {
            NAME: lambda i: natural_key(k[i].name),
            STATUS: lambda i: (rank[k[i].status], i),
            VALUES: lambda i: (value_rank[v.status] if (v := k[i].values) else 9, i),
            MAX_ABS: lambda i: metric(i, "max_abs", -1.0),
            COSINE: lambda i: _cosine_rank(metric(i, "cosine", 2.0)),
        }
        return keys.get(column)

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid():
            return 0
        return len(BASE_COLUMNS) + (len(VALUE_COLUMNS) if self._values else 0)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return (BASE_COLUMNS + VALUE_COLUMNS)[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _alignment(section)
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        key, column = self._keys[self._rows[index.row()]], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._texts[key.status] if column == STATUS else _display(key, column)
        if role == Qt.ItemDataRole.BackgroundRole:
            if column >= VALUES and key.values is not None:
                return self._colours.get(f"v:{key.values.status}") or self._colours[key.status]
            return self._colours[key.status]
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(key, column)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _alignment(column)
        if role == KEY_ROLE:
            return key
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.beginResetModel()
        self._sort = (column, order)
        self._order = None
        self._rows = self._compute_rows()
        self.endResetModel()


def _display(key: KeyDiff, column: int) -> str:
    if column == NAME:
        return key.name
    if column in (SHAPE_A, SHAPE_B):
        shape = key.shape_a if column == SHAPE_A else key.shape_b
        return "—" if shape is None else shape_text(shape)
    if column in (DTYPE_A, DTYPE_B):
        return (key.dtype_a if column == DTYPE_A else key.dtype_b) or "—"
    v = key.values
    if v is None:
        return "—"
    if column == VALUES:
        return VALUE_TEXT.get(v.status, v.status)
    return f"{v.max_abs:.3g}" if column == MAX_ABS else cosine_text(v.cosine, 6)


def cosine_text(cosine: float, digits: int) -> str:
    """As the CLI says it: NaN means one side is all zeros, where the cosine is undefined."""
    return "undefined" if math.isnan(cosine) else f"{cosine:.{digits}f}"


def _cosine_rank(cosine: float) -> float:
    """Undefined (one side all zeros, the other not) sorts as the least similar; NaN itself would
    leave the order undefined."""
    return -2.0 if math.isnan(cosine) else cosine


def _tooltip(key: KeyDiff, column: int) -> str | None:
    if column == NAME:
        return key.name + (f"\nIn A: {key.name_a}" if key.name_a else "")
    v = key.values
    if column >= VALUES and v is not None:
        text = (f"max |A−B| {v.max_abs:.6g}, mean |A−B| {v.mean_abs:.6g}, relative L2 {v.rel_l2:.3g}, "
                f"cosine {cosine_text(v.cosine, 8)}\natol {v.atol:g}, rtol {v.rtol:g}"
                + (", bit-identical" if v.bit_identical else ""))
        if math.isnan(v.cosine):
            text += "\nThe cosine is undefined: one side is all zeros."
        return text + (f"\n{v.note}" if v.note else "")
    return None


def _alignment(column: int) -> Qt.AlignmentFlag:
    right = column in (MAX_ABS, COSINE)
    horizontal = Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft
    return horizontal | Qt.AlignmentFlag.AlignVCenter

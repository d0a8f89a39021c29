"""The flat tensor table: one row per TensorInfo, sorted and filtered in the model itself.

Rows are indices into the section's tensor list, so 200k keys cost a few lists of ints, not widgets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from math import prod
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from core.dtypes import ITEMSIZE
from core.inspect import name_matcher as name_matcher  # one filter rule for the CLI and the app
from core.model import BUFFER, TensorInfo
from core.report import human_bytes, shape_text
from gui.models.columns import TitledColumns

COLUMNS = ("Name", "Shape", "Dtype", "Size", "Role")
NAME, SHAPE, DTYPE, SIZE, ROLE = range(len(COLUMNS))
TENSOR_ROLE = Qt.ItemDataRole.UserRole  # data(index, TENSOR_ROLE) -> the TensorInfo
_Index = QModelIndex | QPersistentModelIndex
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[Any, ...]:
    """'layers.10.w' sorts after 'layers.2.w'."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


class TensorTableModel(TitledColumns, QAbstractTableModel):
    COLUMNS = COLUMNS

    def header_alignment(self, section: int) -> Any:
        return _alignment(section)

    def __init__(self, tensors: list[TensorInfo] | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._tensors: list[TensorInfo] = []
        self._nbytes: list[int] = []
        self._rows: list[int] = []
        self._order: list[int] | None = None  # None = file order
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)
        self._matcher: Callable[[str], bool] | None = None
        self._aliases: dict[str, list[str]] = {}
        self.set_tensors(tensors or [])

    # -- content -----------------------------------------------------------------------------
    def set_tensors(self, tensors: list[TensorInfo], aliases: list[list[str]] | None = None) -> None:
        """`aliases`: groups of names sharing one storage (tied weights), shown in tooltips."""
        self.beginResetModel()
        self._aliases = {name: group for group in aliases or [] for name in group}
        self._tensors = list(tensors)
        self._nbytes = [prod(t.shape) * ITEMSIZE.get(t.dtype, 0) for t in self._tensors]
        self._order = None
        self._rows = self._compute_rows()
        self.endResetModel()

    def set_filter(self, text: str) -> None:
        self.beginResetModel()
        self._matcher = name_matcher(text)
        self._rows = self._compute_rows()
        self.endResetModel()

    def tensor(self, row: int) -> TensorInfo:
        return self._tensors[self._rows[row]]

    def total_count(self) -> int:
        return len(self._tensors)

    def _compute_rows(self) -> list[int]:
        order = self._sorted_order()
        if self._matcher is None:
            return order
        match, tensors = self._matcher, self._tensors
        return [i for i in order if match(tensors[i].name)]

    def _sorted_order(self) -> list[int]:
        column, order = self._sort
        if self._order is None:
            indices = range(len(self._tensors))
            key = self._sort_key(column)
            if key is None and self._alphabetical():
                # such a file (safetensors) keeps no model order: 'layer.2' before 'layer.11'
                key = self._sort_key(NAME)
            self._order = list(indices) if key is None else sorted(indices, key=key)
            if key is not None and order == Qt.SortOrder.DescendingOrder:
                self._order.reverse()
        return self._order

    def _alphabetical(self) -> bool:
        names = [t.name for t in self._tensors]
        return all(a <= b for a, b in zip(names, names[1:], strict=False))

    def _sort_key(self, column: int) -> Callable[[int], Any] | None:
        t = self._tensors
        keys: dict[int, Callable[[int], Any]] = {
            NAME: lambda i: natural_key(t[i].name),
            SHAPE: lambda i: (t[i].numel, t[i].shape),
            DTYPE: lambda i: (t[i].dtype, natural_key(t[i].name)),
            SIZE: lambda i: self._nbytes[i],
            ROLE: lambda i: (t[i].role, natural_key(t[i].name)),
        }
        return keys.get(column)

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)


    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i = self._rows[index.row()]
        t, column = self._tensors[i], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(t, column, self._nbytes[i])
        if role == Qt.ItemDataRole.ToolTipRole and column == NAME:
            return _name_tooltip(t.name, self._aliases.get(t.name))
        if role == Qt.ItemDataRole.ToolTipRole and column == SIZE:
            return f"{self._nbytes[i]:,} bytes, {t.numel:,} elements"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _alignment(column)
        if role == Qt.ItemDataRole.ForegroundRole and t.role == BUFFER:
            return QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
        if role == TENSOR_ROLE:
            return t
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        old = self.persistentIndexList()
        kept = [self._rows[i.row()] for i in old]
        self._sort = (column, order)
        self._order = None
        self._rows = self._compute_rows()
        where = {tensor: row for row, tensor in enumerate(self._rows)} if old else {}
        new = [self.index(where[k], i.column()) for k, i in zip(kept, old, strict=True)]
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()


def _name_tooltip(name: str, group: list[str] | None) -> str:
    others = [n for n in group or [] if n != name]
    return name + (f"\nShares its storage with: {', '.join(others)}" if others else "")


def _display(t: TensorInfo, column: int, nbytes: int) -> str:
    if column == NAME:
        return t.name
    if column == SHAPE:
        return shape_text(t.shape)
    if column == DTYPE:
        return t.dtype
    if column == SIZE:
        return human_bytes(nbytes)
    return t.role


def _alignment(column: int) -> Qt.AlignmentFlag:
    horizontal = Qt.AlignmentFlag.AlignRight if column == SIZE else Qt.AlignmentFlag.AlignLeft
    return horizontal | Qt.AlignmentFlag.AlignVCenter

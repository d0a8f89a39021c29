"""The column part of Qt's model API for a model whose columns are a fixed tuple of titles."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

_Index = QModelIndex | QPersistentModelIndex


class TitledColumns:
    """`columnCount` and `headerData` from `COLUMNS`, header alignment from `header_alignment`.

    Put it before the Qt base class. A table (`TREE = False`) has no columns under a valid
    parent, as Qt asks of table models; a tree's rows all have the same columns.
    """

    COLUMNS: tuple[str, ...] = ()
    TREE = False

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() and not self.TREE else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return self.header_alignment(section)
        return None

    def header_alignment(self, section: int) -> Any:
        """Qt's default; models with right-aligned number columns say so."""
        return None

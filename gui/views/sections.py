"""Sections panel: the file's sections (model / ema / optimizer / training values) with counts, and
the plain values (epoch, step, hyper-parameters...) of the selected section."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.inspect import InspectResult, SectionView
from core.report import human_bytes

MAX_CHILDREN = 200  # values shown per list/dict level; the rest is summarised
MAX_DEPTH = 8


class SectionsPanel(QWidget):
    section_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setSpacing(2)
        self.list.currentItemChanged.connect(self._on_current)
        self.values = QTreeWidget()
        self.values.setHeaderLabels(["Key", "Value"])
        self.values.setColumnCount(2)
        self.values.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.values.setUniformRowHeights(True)
        self.values_label = QLabel("Values")
        splitter = QSplitter(Qt.Orientation.Vertical)
        top, bottom = QWidget(), QWidget()
        for box, title, widget in ((top, "Sections", self.list),
                                   (bottom, None, self.values)):
            column = QVBoxLayout(box)
            column.setContentsMargins(0, 0, 0, 0)
            column.addWidget(QLabel(title) if title else self.values_label)
            column.addWidget(widget)
            splitter.addWidget(box)
        splitter.setSizes([200, 300])
        self.values_box = bottom  # hidden for a section without plain values (nothing to show)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._views: dict[str, SectionView] = {}

    def set_result(self, result: InspectResult) -> None:
        self._views = {v.name: v for v in result.sections}
        self.list.clear()
        for view in result.sections:
            item = QListWidgetItem(_section_text(view, view.name == result.weights))
            item.setData(Qt.ItemDataRole.UserRole, view.name)
            item.setToolTip(_section_tooltip(view))
            self.list.addItem(item)
        first = result.weights if result.weights in self._views else next(iter(self._views), None)
        if first is not None:
            self.select(first)

    def select(self, name: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)

    def current(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def _on_current(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is None:
            return
        view = self._views[item.data(Qt.ItemDataRole.UserRole)]
        self.values_label.setText(f"Values in '{view.name}'" if view.values else
                                  f"No plain values in '{view.name}'")
        self.values.clear()
        _add_values(self.values.invisibleRootItem(), view.values, 0)
        self.values.expandToDepth(0)
        self.values_box.setVisible(bool(view.values))
        self.section_changed.emit(view.name)


def _section_text(view: SectionView, is_weights: bool) -> str:
    parts = []
    if view.totals.tensors:
        parts.append(f"{view.totals.tensors:,} tensors, {human_bytes(view.totals.nbytes)}")
    if view.values:
        parts.append(f"{len(view.values)} value{'s' if len(view.values) != 1 else ''}")
    label = f"{view.name}  (weights)" if is_weights else view.name
    return f"{label}\n{' · '.join(parts) or 'empty'}"


def _section_tooltip(view: SectionView) -> str:
    text = f"Section '{view.name}'"
    if view.common_prefix:
        text += f"\nEvery key starts with '{view.common_prefix}'"
    return text


def _add_values(parent: QTreeWidgetItem, value: Any, depth: int) -> None:
    items = _children(value)
    for i, (key, child) in enumerate(items):
        if i == MAX_CHILDREN:
            QTreeWidgetItem(parent, [f"… {len(items) - MAX_CHILDREN} more", ""])
            break
        nested = _children(child) and depth < MAX_DEPTH
        item = QTreeWidgetItem(parent, [str(key), _summary(child) if nested else _short(child)])
        item.setToolTip(1, _short(child, 2000))
        if nested:
            _add_values(item, child, depth + 1)


def _children(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        return list(enumerate(value))
    return []


def _summary(value: Any) -> str:
    kind = "dict" if isinstance(value, dict) else "list"
    return f"{kind} of {len(value)}"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

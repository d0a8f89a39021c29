"""The diff as a module tree: key names split on '.', each module with its number of keys, its worst
status (a module's colour is that of its worst key: a partial load or a fine-tune shows along depth)
and the largest relative change ||B−A||/||A|| below it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt

from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, SHAPE, DiffResult, KeyDiff, gc_paused
from core.diff.values import CLOSE, DIFFERENT
from gui.models.columns import TitledColumns
from gui.models.diff_table import STATUS_RGB, VALUE_RGB, VALUE_TEXT, status_texts, tint
from gui.models.module_tree import children_first

COLUMNS = ("Name", "Keys", "Worst", "Max change")
NAME, KEYS, WORST, CHANGE = range(len(COLUMNS))
KEY_ROLE = Qt.ItemDataRole.UserRole  # the KeyDiff of a leaf, None for a module
RANK_ROLE = Qt.ItemDataRole.UserRole + 1  # the worst rank at or below a node
# worst first: a structural problem beats a value difference, which beats closeness
RANKS = {SHAPE: 6, ONLY_A: 5, ONLY_B: 4, DTYPE: 3, DIFFERENT: 2, CLOSE: 1, SAME: 0}
_Index = QModelIndex | QPersistentModelIndex


def key_rank(key: KeyDiff) -> str:
    """The status a key counts with: its structural one, else its value status when it differs."""
    if key.status != SAME:
        return key.status
    return key.values.status if key.values is not None and key.values.status in (DIFFERENT, CLOSE) \
        else SAME


def key_change(key: KeyDiff) -> float | None:
    return key.values.rel_change if key.values is not None and key.values.status != "skipped" else None


class DiffNode:
    __slots__ = ("name", "parent", "row", "children", "by_name", "key", "worst", "keys", "change")

    def __init__(self, name: str, parent: DiffNode | None, row: int) -> None:
        self.name, self.parent, self.row = name, parent, row
        self.children: list[DiffNode] = []
        self.by_name: dict[str, DiffNode] = {}
        self.key: KeyDiff | None = None
        self.worst = SAME
        self.keys = 0
        self.change: float | None = None

    @property
    def path(self) -> str:
        parts, node = [], self
        while node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))


def names_by_depth(root: DiffNode) -> Iterator[tuple[str, int]]:
    """(name, depth) of every node, breadth first: what the name column has to fit."""
    level, depth = root.children, 0
    while level:
        yield from ((node.name, depth) for node in level)
        level, depth = [c for node in level for c in node.children], depth + 1


def build_diff_tree(keys: list[KeyDiff]) -> DiffNode:
    root = DiffNode("", None, 0)
    with gc_paused():  # 200k new nodes would trigger many useless cyclic-GC passes
        for key in keys:
            node = root
            for part in key.name.split("."):
                child = node.by_name.get(part)
                if child is None:
                    child = node.by_name[part] = DiffNode(part, node, len(node.children))
                    node.children.append(child)
                node = child
            node.key = key
        _subtotal(root)
    return root


def _subtotal(root: DiffNode) -> None:
    """Fill keys/worst/change bottom-up, one visit per node."""
    for node in children_first(root):
        worst, changes = SAME, []
        if node.key is not None:
            node.keys, worst = 1, key_rank(node.key)
            changes.append(key_change(node.key))
        for child in node.children:
            node.keys += child.keys
            worst = child.worst if RANKS[child.worst] > RANKS[worst] else worst
            changes.append(child.change)
        node.worst = worst
        node.change = _largest(changes)


def _largest(changes: list[float | None]) -> float | None:
    """The largest change; an infinite one (A all zeros, e.g. a LayerNorm bias) only when no finite
    one exists, as it would hide every finite one."""
    known = [c for c in changes if c is not None]
    finite = [c for c in known if math.isfinite(c)]
    return max(finite) if finite else (known[0] if known else None)


class DiffTreeModel(TitledColumns, QAbstractItemModel):
    COLUMNS = COLUMNS
    TREE = True

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.root = DiffNode("", None, 0)
        self._texts = status_texts(False)
        self._colours = {s: tint(STATUS_RGB.get(s) or VALUE_RGB.get(s)) for s in RANKS}

    def set_result(self, result: DiffResult | None,
                   order: Callable[[list[KeyDiff]], list[KeyDiff]] | None = None) -> None:
        """`order`: puts the keys in the order the tree shows them (default: the result's)."""
        self.beginResetModel()
        keys = [k for s in result.sections for k in s.keys] if result is not None else []
        keys = order(keys) if order is not None else keys
        self._texts = status_texts(result is not None and result.against_model)
        self.root = build_diff_tree(keys)
        self.endResetModel()

    def node(self, index: _Index) -> DiffNode:
        return index.internalPointer() if index.isValid() else self.root

    def index_of_path(self, path: str) -> QModelIndex:
        node, index = self.root, QModelIndex()
        for part in path.split(".") if path else []:
            found = node.by_name.get(part)
            if found is None:
                return QModelIndex()
            node, index = found, self.createIndex(found.row, 0, found)
        return index

    def status_text(self, status: str) -> str:
        return VALUE_TEXT[status] if status in (DIFFERENT, CLOSE) else self._texts[status]

    # -- Qt model API ------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        children = self.node(parent).children
        if 0 <= row < len(children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index: _Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        parent = self.node(index).parent if index.isValid() else None
        if parent is None or parent is self.root:
            return QModelIndex()
        return self.createIndex(parent.row, 0, parent)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() and parent.column() != 0 else len(self.node(parent).children)


    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node, column = self.node(index), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(node, column)
        if role == Qt.ItemDataRole.BackgroundRole:
            return self._colours.get(node.worst)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{node.path}\n{node.keys:,} key(s); worst: {self.status_text(node.worst)}"
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (KEYS, CHANGE):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        if role == KEY_ROLE:
            return node.key
        if role == RANK_ROLE:
            return node.worst
        return None

    def _display(self, node: DiffNode, column: int) -> str:
        if column == NAME:
            return node.name
        if column == KEYS:
            return f"{node.keys:,}" if node.children else ""
        if column == WORST:
            return self.status_text(node.worst)
        return change_text(node.change)


def change_text(change: float | None) -> str:
    if change is None:
        return ""
    return "∞" if math.isinf(change) else "0" if change == 0 else f"{change:.3g}"

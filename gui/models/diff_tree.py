"""The diff as a module tree: key names split on '.', each module with its number of keys, its worst
status (a module's colour is that of its worst key: a partial load or a fine-tune shows along depth)
and the largest relative change ||B−A||/||A|| below it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt

from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, SHAPE, DiffResult, KeyDiff, gc_paused
from core.diff.values import CLOSE, DIFFERENT
from gui.models.columns import TitledColumns
from gui.models.diff_table import STATUS_RGB, VALUE_RGB, VALUE_TEXT, status_texts, tint
from gui.models.module_tree import children_first
from gui.models.tensor_table import natural_key

COLUMNS = ("Name", "Keys", "Worst", "Max change")
NAME, KEYS, WORST, CHANGE = range(len(COLUMNS))
KEY_ROLE = Qt.ItemDataRole.UserRole  # the KeyDiff of a leaf, None for a module
RANK_ROLE = Qt.ItemDataRole.UserRole + 1  # the worst rank at or below a node
# worst first: a structural problem beats a value difference, which beats closeness
RANKS = {SHAPE: 6, ONLY_A: 5, ONLY_B: 4, DTYPE: 3, DIFFERENT: 2, CLOSE: 1, SAME: 0}
_Index = QModelIndex | QPersistentModelIndex

if TYPE_CHECKING:
    import numpy as np


def key_rank(key: KeyDiff) -> str:
    """The status a key counts with: its structural one, else its value status when it differs."""
    if key.status != SAME:
        return key.status
    return key.values.status if key.values is not None and key.values.status in (DIFFERENT, CLOSE) \
        else SAME


def key_change(key: KeyDiff) -> float | None:
    return key.values.rel_change if key.values is not None and key.values.status != "skipped" else None


class DiffNode:
    __slots__ = ("name", "row", "children", "key", "worst", "keys", "change")

    def __init__(self, name: str, row: int) -> None:
        self.name, self.row = name, row
        self.children: list[DiffNode] | tuple[()] = ()  # a list once it has children
        self.key: KeyDiff | None = None
        self.worst = SAME
        self.keys = 0
        self.change: float | None = None


@dataclass
class DiffTree:
    """The module tree of a diff. No node refers to its parent (`parents` does): the tree holds no
    reference cycle, so one replaced is freed at once; cyclic garbage of 100k keys would cost the
    GUI thread's garbage collector a second or more."""

    root: DiffNode
    parents: dict[DiffNode, DiffNode] = field(default_factory=dict)  # every node but the root

    def path(self, node: DiffNode) -> str:
        parts = []
        while node is not self.root:
            parts.append(node.name)
            node = self.parents[node]
        return ".".join(reversed(parts))


def names_by_depth(root: DiffNode) -> Iterator[tuple[str, int]]:
    """(name, depth) of every node, breadth first: what the name column has to fit."""
    level, depth = root.children, 0
    while level:
        yield from ((node.name, depth) for node in level)
        level, depth = [c for node in level for c in node.children], depth + 1


def build_diff_tree(keys: list[KeyDiff]) -> DiffTree:
    tree = DiffTree(DiffNode("", 0))
    parents = tree.parents
    by_name: dict[DiffNode, dict[str, DiffNode]] = {}  # the children of each node, while building
    with gc_paused():  # 200k new nodes would trigger many useless cyclic-GC passes
        for key in keys:
            node = tree.root
            for part in key.name.split("."):
                names = by_name.get(node)
                child = names.get(part) if names is not None else None
                if child is None:
                    if names is None:
                        names, node.children = by_name.setdefault(node, {}), []
                    child = names[part] = DiffNode(part, len(node.children))
                    node.children.append(child)  # type: ignore[union-attr]
                    parents[child] = node
                node = child
            node.key = key
        _subtotal(tree.root)
    return tree


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


def model_order(keys: list[KeyDiff]) -> list[KeyDiff]:
    """The keys in model order: the file's order, unless the file sorted its keys by name (as
    safetensors does); then layer 10 goes after layer 9, not after layer 1."""
    names = [k.name for k in keys if k.status != ONLY_B]  # B's extra keys come last in any case
    if names != sorted(names):
        return keys
    return sorted(keys, key=lambda k: natural_key(k.name))


@dataclass
class DiffShown:
    """What the diff view shows of a result, prepared off the GUI thread (a 100k-key tree takes
    seconds): the module tree and the compared keys in model order with their relative changes,
    grouped by (value status, finite change): one plot item per group, each with the places of its
    keys in `plotted`. Nothing here refers back to Qt objects."""

    tree: DiffTree
    plotted: list[KeyDiff]
    changes: np.ndarray  # float64, one per plotted key (0 for an unknown one)
    groups: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)
    places: dict[str, int] = field(default_factory=dict)  # key name -> its place in `plotted`


def shown_diff(result: DiffResult) -> DiffShown:
    import numpy as np  # not at start-up: the app's first window does without it

    keys = model_order([k for s in result.sections for k in s.keys])
    plotted = [k for k in keys if key_change(k) is not None]
    changes = np.array([key_change(k) or 0.0 for k in plotted], dtype=np.float64)
    finite = np.isfinite(changes).tolist()
    groups: dict[tuple[str, bool], list[int]] = {}  # in order of first appearance, as drawn
    for i, key in enumerate(plotted):
        status = key.values.status if key.values is not None else ""
        groups.setdefault((status, finite[i]), []).append(i)
    return DiffShown(build_diff_tree(keys), plotted, changes,
                     {group: np.array(places, dtype=np.int64) for group, places in groups.items()},
                     {k.name: i for i, k in enumerate(plotted)})


class DiffTreeModel(TitledColumns, QAbstractItemModel):
    COLUMNS = COLUMNS
    TREE = True

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.tree = DiffTree(DiffNode("", 0))
        self._texts = status_texts(False)
        self._colours = {s: tint(STATUS_RGB.get(s) or VALUE_RGB.get(s)) for s in RANKS}

    def set_result(self, result: DiffResult | None,
                   order: Callable[[list[KeyDiff]], list[KeyDiff]] | None = None) -> None:
        """`order`: puts the keys in the order the tree shows them (default: the result's)."""
        self.beginResetModel()
        keys = [k for s in result.sections for k in s.keys] if result is not None else []
        keys = order(keys) if order is not None else keys
        self._texts = status_texts(result is not None and result.against_model)
        self._replace(build_diff_tree(keys))

    def set_tree(self, tree: DiffTree, against_model: bool) -> None:
        """Show a tree built beforehand (by `shown_diff`, on the worker)."""
        self.beginResetModel()
        self._texts = status_texts(against_model)
        self._replace(tree)

    def _replace(self, tree: DiffTree) -> None:
        """Swap in `tree` and end the model reset. The old tree is freed only once the reset has
        ended: until then views may still hold indexes that point into it."""
        old, self.tree = self.tree, tree
        self.endResetModel()
        del old

    @property
    def root(self) -> DiffNode:
        return self.tree.root

    def path(self, node: DiffNode) -> str:
        return self.tree.path(node)

    def node(self, index: _Index) -> DiffNode:
        return index.internalPointer() if index.isValid() else self.root

    def index_of_path(self, path: str) -> QModelIndex:
        node, index = self.root, QModelIndex()
        for part in path.split(".") if path else []:  # a scan per level: paths are rarely looked up
            found = next((child for child in node.children if child.name == part), None)
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
        parent = self.tree.parents.get(self.node(index)) if index.isValid() else None
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
            return f"{self.path(node)}\n{node.keys:,} key(s); worst: {self.status_text(node.worst)}"
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

"""The module tree: tensor names split on '.', each node with subtotal parameters, size and count.

Nodes are small slotted objects built once; Qt asks for rows lazily (no widget per row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache
from math import prod
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QApplication

from core.diff.structure import gc_paused
from core.dtypes import ITEMSIZE
from core.model import BUFFER, TensorInfo
from core.report import human_bytes, human_count, shape_text
from gui.models.columns import TitledColumns
from gui.models.tensor_table import name_matcher

COLUMNS = ("Name", "Tensors", "Parameters", "Size", "Shape", "Dtype")
NAME, COUNT, PARAMS, SIZE, SHAPE, DTYPE = range(len(COLUMNS))
TENSOR_ROLE = Qt.ItemDataRole.UserRole  # the TensorInfo of a leaf, None for a module
NODE_ROLE = Qt.ItemDataRole.UserRole + 1  # the Node itself
_Index = QModelIndex | QPersistentModelIndex


class Node:
    __slots__ = ("name", "parent", "row", "children", "by_name", "tensor",
                 "parameters", "nbytes", "tensors")

    def __init__(self, name: str, parent: Node | None, row: int) -> None:
        self.name, self.parent, self.row = name, parent, row
        self.children: list[Node] = []
        self.by_name: dict[str, Node] | None = None  # made on the first child (most nodes are leaves)
        self.tensor: TensorInfo | None = None
        self.parameters = 0  # elements of non-buffer tensors at or below this node
        self.nbytes = 0
        self.tensors = 0

    def child(self, name: str) -> Node | None:
        return self.by_name.get(name) if self.by_name else None

    @property
    def path(self) -> str:
        parts, node = [], self
        while node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))


def build_tree(tensors: list[TensorInfo]) -> Node:
    """One node per dotted name part, in file order except that numbered siblings (a ModuleList's
    0, 1, 2, …, 10) go in number order, with subtotals (names are unique per section)."""
    root = Node("", None, 0)
    with gc_paused():  # 400k new objects would trigger many useless cyclic-GC passes
        _insert_all(root, tensors)
        _subtotal(root)
    return root


def _number_order(node: Node) -> None:
    """Numbered children in number order, in the places numbered children held: safetensors stores
    names sorted as text (0, 1, 10, 11, 2), pickles in module order; other names keep that order."""
    slots = [i for i, c in enumerate(node.children) if c.name.isdigit()]
    if len(slots) < 2:
        return
    numbered = sorted((node.children[i] for i in slots), key=lambda c: int(c.name))
    for slot, child in zip(slots, numbered, strict=True):
        node.children[slot] = child
    for row, child in enumerate(node.children):
        child.row = row


def names_by_depth(root: Node) -> Iterator[tuple[str, int]]:
    """(name, depth) of every node, breadth first: what the name column has to fit."""
    level, depth = root.children, 0
    while level:
        yield from ((node.name, depth) for node in level)
        level, depth = [c for node in level for c in node.children], depth + 1


def _insert_all(root: Node, tensors: list[TensorInfo]) -> None:
    for t in tensors:
        node = root
        for part in t.name.split("."):
            if node.by_name is None:
                node.by_name = {}
            child = node.by_name.get(part)
            if child is None:
                child = Node(part, node, len(node.children))
                node.children.append(child)
                node.by_name[part] = child
            node = child
        node.tensor = t


def children_first(root: Any) -> list[Any]:
    """Every node of a tree (nodes with `.children`), each after all of its children; without
    recursion, so very deep names are fine."""
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    return order[::-1]


def _subtotal(root: Node) -> None:
    """Fill parameters/nbytes/tensors bottom-up, one visit per node (numbered children sorted)."""
    for node in children_first(root):
        _number_order(node)
        t = node.tensor
        if t is not None:
            numel = prod(t.shape)
            node.parameters = 0 if t.role == BUFFER else numel
            node.nbytes = numel * ITEMSIZE.get(t.dtype, 0)
            node.tensors = 1
        for c in node.children:
            node.parameters += c.parameters
            node.nbytes += c.nbytes
            node.tensors += c.tensors


class ModuleTreeModel(TitledColumns, QAbstractItemModel):
    """The tree of one section's tensors; `set_filter` rebuilds it from the matching names only,
    so subtotals then describe what is shown."""

    COLUMNS = COLUMNS
    TREE = True

    def header_alignment(self, section: int) -> Any:
        return _alignment(section)

    def __init__(self, tensors: list[TensorInfo] | None = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._tensors = list(tensors or [])
        self._matcher: Callable[[str], bool] | None = None
        self.root = build_tree(self._tensors)

    def set_tensors(self, tensors: list[TensorInfo], filter_text: str | None = None) -> None:
        self._tensors = list(tensors)
        if filter_text is not None:
            self._matcher = name_matcher(filter_text)
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self._matcher = name_matcher(text)
        self._rebuild()

    def _rebuild(self) -> None:
        match = self._matcher
        shown = self._tensors if match is None else [t for t in self._tensors if match(t.name)]
        self.beginResetModel()
        self.root = build_tree(shown)
        self.endResetModel()

    def node(self, index: _Index) -> Node:
        return index.internalPointer() if index.isValid() else self.root

    def index_of_path(self, path: str) -> QModelIndex:
        """The index of a dotted path (a module or a tensor), invalid when absent."""
        node: Node | None = self.root
        index = QModelIndex()
        for part in path.split(".") if path else []:
            node = node.child(part) if node is not None else None
            if node is None:
                return QModelIndex()
            index = self.createIndex(node.row, 0, node)
        return index

    # -- Qt model API ------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        children = self.node(parent).children
        if 0 <= row < len(children) and 0 <= column < len(COLUMNS):
            return self.createIndex(row, column, children[row])
        return QModelIndex()

    def parent(self, index: _Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        parent = self.node(index).parent
        if parent is None or parent is self.root:
            return QModelIndex()
        return self.createIndex(parent.row, 0, parent)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self.node(parent).children)

    def hasChildren(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008
        return self.rowCount(parent) > 0

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node, column = self.node(index), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(node, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(node)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _alignment(column)
        if role == Qt.ItemDataRole.ForegroundRole and node.tensor is not None \
                and node.tensor.role == BUFFER:
            return QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
        if role == Qt.ItemDataRole.FontRole and column == NAME and node.children:
            return _bold()
        if role == TENSOR_ROLE:
            return node.tensor
        if role == NODE_ROLE:
            return node
        return None


def _display(node: Node, column: int) -> str:
    t = node.tensor
    if column == NAME:
        return node.name
    if column == COUNT:
        return f"{node.tensors:,}" if node.children else ""
    if column == PARAMS:
        return human_count(node.parameters) if node.parameters or t is None else "—"
    if column == SIZE:
        return human_bytes(node.nbytes)
    if t is None or node.children:
        return ""
    return shape_text(t.shape) if column == SHAPE else t.dtype


@lru_cache(maxsize=1)
def _bold() -> QFont:
    font = QFont(QApplication.font())
    font.setBold(True)
    return font


def _tooltip(node: Node) -> str:
    kind = "tensor" if node.tensor is not None and not node.children else "module"
    return (f"{node.path} ({kind})\n{node.tensors:,} tensor(s), {node.parameters:,} parameters, "
            f"{node.nbytes:,} bytes")


def _alignment(column: int) -> Qt.AlignmentFlag:
    right = column in (COUNT, PARAMS, SIZE)
    horizontal = Qt.AlignmentFlag.AlignRight if right else Qt.AlignmentFlag.AlignLeft
    return horizontal | Qt.AlignmentFlag.AlignVCenter

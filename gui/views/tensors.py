"""Tensors panel: a live name filter over a flat sortable table and a module tree of one section."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QStackedWidget,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.model import TensorInfo
from core.report import shape_text
from gui.models import module_tree, tensor_table
from gui.models.module_tree import ModuleTreeModel, names_by_depth
from gui.models.tensor_table import TensorTableModel
from gui.views.name_columns import fit_name_column, fit_text_columns, readable_names
from gui.widgets import sortable_table

FILTER_DELAY_MS = 120
SAMPLE_TEXT = {  # widest text expected per column, to size columns without measuring every row
    "shape": "[32000, 4096, 3, 3]", "dtype": "float8_e4m3fn", "size": "1023.9 MB",
    "role": "parameter", "params": "999.99M", "count": "99,999",
}


class TensorsPanel(QWidget):
    tensor_selected = Signal(object)  # TensorInfo or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = TensorTableModel(parent=self)
        self.tree_model = ModuleTreeModel(parent=self)
        self._tensors: list[TensorInfo] = []
        self._tree_stale = False  # the tree is rebuilt only while its tab is shown
        self._build()
        self._timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS)
        self._timer.timeout.connect(self.apply_filter)
        self.filter.textChanged.connect(lambda _text: self._timer.start())

    def _build(self) -> None:
        self.filter = QLineEdit(placeholderText="Filter names: substring, or glob like *.bn.*  (Ctrl+F)",
                                clearButtonEnabled=True)
        self.filter.setAcceptDrops(False)  # dropped files go to the window, not into the filter
        self.count = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.filter, 1)
        row.addWidget(self.count)
        self.table = _table_view(self.table_model)
        self.tree = _tree_view(self.tree_model)
        self.copy_table_names = readable_names(self.table, _tensor_name)
        self.copy_tree_names = readable_names(self.tree, lambda i: self.tree_model.node(i).path)
        self.table.selectionModel().currentRowChanged.connect(self._on_table_current)
        self.tree.selectionModel().currentRowChanged.connect(self._on_tree_current)
        self.tabs = QTabWidget(documentMode=True)
        self.tabs.addTab(self.table, "Tensors")
        self.tabs.addTab(self.tree, "Modules")
        self.tabs.currentChanged.connect(self._refresh_tree)
        self.empty = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.tabs)
        self.stack.addWidget(self.empty)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.stack, 1)

    def set_tensors(self, tensors: list[TensorInfo], section: str,
                    aliases: list[list[str]] | None = None) -> None:
        self._tensors = tensors
        self.table_model.set_tensors(tensors, aliases)
        fit_text_columns(self.table, self.table.horizontalHeader(), {
            tensor_table.SHAPE: (shape_text(t.shape) for t in tensors),
            tensor_table.DTYPE: (t.dtype for t in tensors)})
        fit_name_column(self.table, self.table.horizontalHeader(), tensor_table.NAME,
                        ((t.name, 0) for t in tensors))
        self.apply_filter()
        self.empty.setText(f"The '{section}' section holds no tensors; its values are listed "
                           "on the left.")
        self.stack.setCurrentWidget(self.tabs if tensors else self.empty)
        self.tensor_selected.emit(None)

    def apply_filter(self) -> None:
        self._timer.stop()
        self.table_model.set_filter(self.filter.text())
        shown, total = self.table_model.rowCount(), self.table_model.total_count()
        self.count.setText(f"{shown:,} of {total:,}" if shown != total else f"{total:,} tensors")
        self._tree_stale = True
        self._refresh_tree()

    def _refresh_tree(self) -> None:
        if not self._tree_stale or self.tabs.currentWidget() is not self.tree:
            return
        self._tree_stale = False
        self.tree_model.set_tensors(self._tensors, self.filter.text())
        root = self.tree_model.root
        fit_name_column(self.tree, self.tree.header(), module_tree.NAME, names_by_depth(root))
        if root.tensors <= 200:
            self.tree.expandAll()
        elif len(root.children) <= 30:
            self.tree.expandToDepth(0)

    def focus_filter(self) -> None:
        self.filter.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter.selectAll()

    def _on_table_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.tensor_selected.emit(current.data(tensor_table.TENSOR_ROLE))

    def _on_tree_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.tensor_selected.emit(current.data(module_tree.TENSOR_ROLE))


def _tensor_name(index: QModelIndex) -> str | None:
    tensor = index.data(tensor_table.TENSOR_ROLE)
    return tensor.name if tensor is not None else None


def _table_view(model: TensorTableModel) -> QTableView:
    view = sortable_table(model)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setAlternatingRowColors(True)
    columns = {tensor_table.SHAPE: "shape", tensor_table.DTYPE: "dtype", tensor_table.SIZE: "size",
               tensor_table.ROLE: "role"}
    _size_columns(view, view.horizontalHeader(), tensor_table.NAME, columns)
    return view


class _Padded(QStyledItemDelegate):
    """Gives tree rows the same breathing room as table rows."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(size.width(), max(size.height(), option.fontMetrics.height() + 6))


def _tree_view(model: QAbstractItemModel) -> QTreeView:
    view = QTreeView()
    view.setModel(model)
    view.setItemDelegate(_Padded(view))
    view.setUniformRowHeights(True)
    view.setAlternatingRowColors(True)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    columns = {module_tree.COUNT: "count", module_tree.PARAMS: "params", module_tree.SIZE: "size",
               module_tree.SHAPE: "shape", module_tree.DTYPE: "dtype"}
    _size_columns(view, view.header(), module_tree.NAME, columns)
    return view


def _size_columns(view: QAbstractItemView, header: QHeaderView, name: int,
                  columns: dict[int, str]) -> None:
    """The others fit their widest expected text; the name column is fitted to the names shown."""
    fit_name_column(view, header, name, [])
    metrics = view.fontMetrics()
    for column, sample in columns.items():
        title = str(view.model().headerData(column, Qt.Orientation.Horizontal))
        width = max(metrics.horizontalAdvance(SAMPLE_TEXT[sample]), metrics.horizontalAdvance(title))
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(column, width + 36)
        header.setProperty("last_width", width + 36)  # the last one is stretched later

"""Tensor names stay readable: middle elision, a name column fitted to the names, the full name in a
tooltip, Ctrl+C copying the selected names, module-tree nodes with counts and sizes."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from core.model import PARAMETER, TensorInfo
from gui.models import module_tree, tensor_table
from gui.views.name_columns import NAME_MAX_WIDTH, NAME_MIN_WIDTH
from gui.views.tensors import TensorsPanel

LONG = "encoder.layer.{}.attention.output.dense.weight"


def bert_like(layers: int) -> list[TensorInfo]:
    tensors = [TensorInfo("embeddings.word_embeddings.weight", (100, 8), "float32", role=PARAMETER)]
    for i in range(layers):
        tensors.append(TensorInfo(LONG.format(i), (8, 8), "float32", role=PARAMETER))
        tensors.append(TensorInfo(f"encoder.layer.{i}.output.LayerNorm.bias", (8,), "float16",
                                  role=PARAMETER))
    return tensors


def panel(qtbot: QtBot, tensors: list[TensorInfo], width: int = 900) -> TensorsPanel:
    widget = TensorsPanel()
    qtbot.addWidget(widget)
    widget.resize(width, 500)
    widget.show()
    widget.set_tensors(tensors, "model")
    return widget


def test_name_column_fits_the_longest_name_and_elides_in_the_middle(qtbot: QtBot) -> None:
    widget = panel(qtbot, bert_like(12))
    table = widget.table
    assert table.textElideMode() == Qt.TextElideMode.ElideMiddle
    longest = table.fontMetrics().horizontalAdvance(LONG.format(11))
    width = table.horizontalHeader().sectionSize(tensor_table.NAME)
    assert longest < width <= NAME_MAX_WIDTH
    row = [widget.table_model.tensor(r).name for r in range(widget.table_model.rowCount())].index(
        LONG.format(3))
    assert widget.table_model.index(row, tensor_table.NAME).data(Qt.ItemDataRole.ToolTipRole) == \
        LONG.format(3)


def test_name_column_stays_within_reason(qtbot: QtBot) -> None:
    huge = [TensorInfo("x" * 400 + ".weight", (2,), "float32", role=PARAMETER)]
    wide = panel(qtbot, huge, width=1600)
    assert wide.table.horizontalHeader().sectionSize(tensor_table.NAME) == NAME_MAX_WIDTH
    narrow = panel(qtbot, huge, width=700)  # the other columns stay whole: no sideways scrolling
    header = narrow.table.horizontalHeader()
    assert NAME_MIN_WIDTH <= header.sectionSize(tensor_table.NAME) < NAME_MAX_WIDTH
    assert header.length() <= narrow.table.viewport().width()
    qtbot.waitUntil(lambda: narrow.table.horizontalScrollBar().maximum() == 0, timeout=2000)
    short = panel(qtbot, [TensorInfo("w", (2,), "float32", role=PARAMETER)])
    assert short.table.horizontalHeader().sectionSize(tensor_table.NAME) == NAME_MIN_WIDTH


def test_ctrl_c_copies_the_selected_names(qtbot: QtBot) -> None:
    widget = panel(qtbot, bert_like(3))
    table, model = widget.table, widget.table_model
    selection = table.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    table.setCurrentIndex(model.index(1, 0))
    selection.select(model.index(4, 0), flags)
    table.setFocus()
    QApplication.clipboard().setText("before")
    qtbot.keyClick(table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text().splitlines() == [model.tensor(1).name, model.tensor(4).name]


def test_tree_nodes_show_counts_and_sizes_and_copy_their_path(qtbot: QtBot) -> None:
    widget = panel(qtbot, bert_like(4))
    widget.tabs.setCurrentWidget(widget.tree)
    model, tree = widget.tree_model, widget.tree
    assert tree.textElideMode() == Qt.TextElideMode.ElideMiddle
    layer = model.index_of_path("encoder.layer.2")
    count = layer.siblingAtColumn(module_tree.COUNT).data()
    size = layer.siblingAtColumn(module_tree.SIZE).data()
    assert count == "2" and size == "272 B"  # 8x8 float32 + 8 float16
    assert model.index_of_path("encoder").siblingAtColumn(module_tree.COUNT).data() == "8"
    leaf = model.index_of_path(LONG.format(2))
    assert leaf.siblingAtColumn(module_tree.COUNT).data() == ""
    tree.setCurrentIndex(leaf)
    tree.setFocus()
    qtbot.keyClick(tree, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == LONG.format(2)
    indent = tree.indentation()
    deepest = tree.fontMetrics().horizontalAdvance("LayerNorm") + indent * 5
    assert tree.header().sectionSize(module_tree.NAME) >= deepest

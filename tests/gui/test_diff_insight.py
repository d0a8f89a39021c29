"""The diff view's module tree (a module's colour is its worst key), the relative-change plot in model
order (clicking a point selects its row) and the A/B histogram overlay, on a fine-tuned BERT-like pair."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from core.diff.structure import ONLY_A, ONLY_B, SAME
from core.diff.values import DIFFERENT
from gui.app import MainWindow
from gui.models import diff_table, diff_tree
from gui.models.diff_table import VALUE_RGB, tint
from gui.views.diff import DiffView
from tests.gui.bert_like import LAYERS, write_pair
from tests.gui.test_diff_view import open_diff


def compared(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> DiffView:
    a, b = write_pair(tmp_path)
    view = open_diff(qtbot, window, a, b)
    assert view.state == "ready"
    with qtbot.waitSignal(view.values_compared, timeout=30_000):
        view.compare_values()
    qtbot.waitUntil(lambda: not view.is_busy())
    return view


def current_key(view: DiffView) -> str:
    return view.model.key(view.table.currentIndex().row()).name


def test_tree_shows_the_worst_status_per_module(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    view = compared(qtbot, window, tmp_path)
    tree = view.insight.tree_model
    worst = {path: tree.node(tree.index_of_path(path)).worst
             for path in ("embeddings", "encoder", "encoder.layer.3", "pooler")}
    assert worst == {"embeddings": SAME, "encoder": DIFFERENT, "encoder.layer.3": DIFFERENT,
                     "pooler": ONLY_A}
    assert tree.node(tree.index_of_path("")).worst == ONLY_A  # the root: worst of all
    encoder = tree.index_of_path("encoder")
    assert encoder.data(Qt.ItemDataRole.BackgroundRole) == tint(VALUE_RGB[DIFFERENT])
    assert encoder.siblingAtColumn(diff_tree.KEYS).data() == f"{16 * LAYERS}"
    assert encoder.siblingAtColumn(diff_tree.WORST).data() == "Different"
    changes = [tree.node(tree.index_of_path(f"encoder.layer.{i}.attention.self.query")).change
               for i in range(LAYERS)]
    assert all(x < y for x, y in zip(changes, changes[1:], strict=False))  # grows with depth
    leaf = tree.index_of_path("encoder.layer.5.output.dense.weight")
    view.insight.tree.setCurrentIndex(leaf)
    assert current_key(view) == "encoder.layer.5.output.dense.weight"
    view.table.setFocus()
    qtbot.keyClick(view.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == "encoder.layer.5.output.dense.weight"
    assert view.table.textElideMode() == Qt.TextElideMode.ElideMiddle
    assert view.table.currentIndex().siblingAtColumn(diff_table.NAME).data(Qt.ItemDataRole.ToolTipRole) \
        == "encoder.layer.5.output.dense.weight"


def test_change_plot_in_model_order_and_click_selects(qtbot: QtBot, window: MainWindow,
                                                      tmp_path: Path) -> None:
    view = compared(qtbot, window, tmp_path)
    insight = view.insight
    assert insight.isVisible() and insight.change_plot is not None
    assert insight.change_plot.getPlotItem().getAxis("left").logMode
    keys = insight.keys
    compared_keys = [k.name for s in view.opened.result.sections for k in s.keys if k.values is not None]
    assert sorted(k.name for k in keys) == sorted(compared_keys)
    layers = [int(k.name.split(".")[2]) for k in keys if k.name.startswith("encoder.layer.")]
    assert layers == sorted(layers)  # model order: layer 10 after layer 9, though the file sorts by name
    drawn = {int(x): float(y) for item in insight.change_plot.getPlotItem().listDataItems()
             if item is not insight._marker for x, y in zip(*item.getData(), strict=True)}
    assert sorted(drawn) == list(range(len(keys)))  # one point per compared key
    xs, ys = list(range(len(keys))), [drawn[i] for i in range(len(keys))]
    first = keys.index(next(k for k in keys if k.name == "embeddings.word_embeddings.weight"))
    lowest = min(k.values.rel_change for k in keys if 0 < k.values.rel_change < math.inf)
    assert math.isclose(10 ** ys[first], lowest / 10)  # identical: drawn just below the lowest change
    target = next(i for i, k in enumerate(keys) if k.name == "encoder.layer.11.attention.self.key.weight")
    assert math.isclose(10 ** ys[target], keys[target].values.rel_change, rel_tol=1e-9)
    view.filter.setText("embeddings")  # the clicked key is hidden: the click shows every key again
    view.apply_filter()
    plot = insight.change_plot
    qtbot.waitUntil(lambda: plot.getViewBox().viewRange()[0][1] >= len(keys) - 1)
    scene = plot.getViewBox().mapViewToScene(QPointF(xs[target], ys[target]))
    with qtbot.waitSignal(insight.histograms_ready, timeout=20_000) as blocker:
        qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.mapFromScene(scene))
    assert current_key(view) == "encoder.layer.11.attention.self.key.weight"
    assert view.table.currentIndex().data(diff_table.KEY_ROLE) is keys[target]
    table = view.table  # the selected row is scrolled into view
    assert table.viewport().rect().intersects(table.visualRect(table.currentIndex()))
    stats_a, stats_b = blocker.args[0]
    assert stats_a.numel == stats_b.numel == 16 * 16
    curves = plot_curves(insight.hist_plot)
    assert len(curves) == 2 and all(sum(c) == 256 for c in curves)
    marker_x, _y = insight._marker.getData()
    assert list(marker_x) == [target]
    qtbot.waitUntil(lambda: not view.is_busy() and not insight.is_busy())


def plot_curves(plot: object) -> list[list[float]]:
    return [list(item.getData()[1]) for item in plot.getPlotItem().listDataItems()]  # type: ignore[attr-defined]


def test_plot_hidden_until_values_are_compared(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    a, b = write_pair(tmp_path)
    view = open_diff(qtbot, window, a, b)
    assert not view.insight.isVisible()  # nothing to plot yet; the tree is there already
    tree = view.insight.tree_model
    assert tree.node(tree.index_of_path("classifier")).worst == ONLY_B
    assert tree.index_of_path("classifier").siblingAtColumn(diff_tree.CHANGE).data() == ""

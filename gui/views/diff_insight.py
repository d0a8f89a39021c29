"""Where two checkpoints differ, for the diff view: the module tree of the diff (a module's colour is
its worst key), a plot of each tensor's relative change ||B−A||/||A|| in model order (log scale;
clicking a point selects its key) and the histograms of A and B of the selected key, overlaid.
pyqtgraph is imported with the first plot. The tree and the plotted data come built by the worker
(`Opened.shown`, see gui.views.diff_jobs), as do the histograms."""

from __future__ import annotations

import html
import math
from itertools import islice
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QSplitter,
    QTableView,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.diff.structure import KeyDiff
from core.report import shape_text
from core.stats import TensorStats, tensor_stats
from gui.models import diff_table, diff_tree
from gui.models.diff_table import VALUE_RGB, DiffTableModel
from gui.models.diff_tree import DiffShown, DiffTreeModel, key_change, names_by_depth, shown_diff
from gui.views.diff_jobs import Opened
from gui.views.latency_plots import make_plot
from gui.views.name_columns import MEASURED_NAMES, fit_name_column, fit_text_columns, readable_names
from gui.views.tensor_detail import histogram_bins
from gui.worker import Job

FLOOR = 1e-12  # where unchanged tensors (change 0) are drawn when nothing changed at all
SIDE_COLOURS = {"A": (31, 119, 180), "B": (255, 127, 14)}
POINT_RGB = (90, 90, 90)


def pair_histograms(opened: Opened, key: KeyDiff, progress: Any = None) -> tuple[TensorStats, ...]:
    """The worker's job: statistics and histograms of A's and B's tensor of one key."""
    sections = opened.result.sections
    section = next(s for s in sections if key in s.keys)
    bins = histogram_bins(max(math.prod(key.shape_a or (1,)), 1))
    a = tensor_stats(opened.a, key.name_a or key.name, section.section_a, progress, bins=bins)
    b = tensor_stats(opened.b, key.name, section.section_b, progress, bins=bins)
    return a, b


class DiffInsight(QWidget):
    """`tree` goes beside the key table; this widget itself holds the two plots."""

    key_selected = Signal(str)  # the name of a key picked in the tree or on the plot
    histograms_ready = Signal(object)  # (stats A, stats B)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree_model = DiffTreeModel(self)
        self.tree = _tree(self.tree_model)
        self.tree.selectionModel().currentRowChanged.connect(self._on_tree_current)
        readable_names(self.tree, lambda i: self.tree_model.path(self.tree_model.node(i)))
        self.keys: list[KeyDiff] = []  # the plotted keys, in model order
        self._position: dict[str, int] = {}  # key name -> its place in self.keys
        self.change_plot: Any = None
        self.hist_plot: Any = None
        self._marker: Any = None
        self._places: dict[Any, Any] = {}  # plot item -> the places in self.keys of its points
        self._ceiling, self._floor = 1.0, FLOOR
        self._opened: Opened | None = None
        self._job: Job | None = None
        self._table: QTableView | None = None
        self.caption = QLabel(wordWrap=True)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.splitter, 1)
        self.setVisible(False)

    def beside(self, table: QTableView) -> QSplitter:
        """The module tree beside the key `table`; the table's current key is shown here."""
        table.selectionModel().currentRowChanged.connect(self.show_row)
        readable_names(table, _key_name)
        keys = QSplitter(Qt.Orientation.Horizontal)
        keys.addWidget(self.tree)
        keys.addWidget(table)
        keys.setSizes([380, 820])
        self._table = table
        return keys

    def set_opened(self, opened: Opened) -> None:
        self.cancel()
        self._opened = opened
        shown = opened.shown if opened.shown is not None else shown_diff(opened.result)
        self.tree_model.set_tree(shown.tree, opened.result.against_model)
        self.tree.expandToDepth(1 if self.tree_model.root.keys <= 2000 else 0)
        fit_name_column(self.tree, self.tree.header(), diff_tree.NAME,
                        names_by_depth(self.tree_model.root))
        if self._table is not None:
            fit_key_columns(self._table, list(islice((k for s in opened.result.sections for k in s.keys),
                                                     MEASURED_NAMES)))
        self.keys = shown.plotted
        self._position = shown.places
        self.setVisible(bool(self.keys))
        if self.keys:
            self._plot_changes(shown)

    def _plot_changes(self, shown: DiffShown) -> None:
        import numpy as np
        import pyqtgraph as pg

        if self.change_plot is None:
            self.change_plot = make_plot(self, "tensor (model order)", "‖B−A‖ / ‖A‖")
            self.change_plot.setLogMode(y=True)
            self.hist_plot = make_plot(self, "value", "count")
            text = self.palette().color(QPalette.ColorRole.Text)
            self.hist_plot.addLegend(offset=(-10, 10), labelTextColor=text)
            self.splitter.addWidget(self.change_plot)
            self.splitter.addWidget(self.hist_plot)
            self.splitter.setSizes([600, 400])
        self.change_plot.clear()
        self._places.clear()
        changes = shown.changes
        endless, finite = np.isinf(changes), changes[np.isfinite(changes)]
        self._ceiling = 10 * max(float(finite.max()) if finite.size else 0.0, 0.1)
        positive = finite[finite > 0]
        self._floor = float(positive.min()) / 10 if positive.size else FLOOR
        drawn = self._drawn_at(changes)
        view = self.change_plot.getViewBox()
        auto_x, auto_y = view.autoRangeEnabled()
        view.disableAutoRange()  # else each item added ranges the view over all the points again
        for (status, is_finite), places in shown.groups.items():
            points = pg.PlotDataItem()
            points.setLogMode(False, True)  # before the data: the points are laid out once
            points.setData(places, drawn[places], pen=None, symbol="o" if is_finite else "t1",
                           symbolSize=8, symbolPen=None, dynamicRangeLimit=None,
                           symbolBrush=pg.mkBrush(*(VALUE_RGB.get(status) or POINT_RGB)))
            self.change_plot.addItem(points)
            self._places[points] = places
            points.sigPointsClicked.connect(self._on_points_clicked)
        self._marker = self.change_plot.plot([], [], pen=None, symbol="o", symbolSize=15,
                                             symbolBrush=None, symbolPen=pg.mkPen("k", width=2))
        view.enableAutoRange(x=auto_x, y=auto_y)
        unchanged, endless_count = int((changes == 0).sum()), int(endless.sum())
        self.caption.setText(f"Relative change ‖B−A‖/‖A‖ of {len(self.keys):,} compared tensors, in "
                             "model order" + (f"; {unchanged:,} unchanged at the bottom" if unchanged else "")
                             + (f"; ▲ {endless_count:,} where A is all zeros" if endless_count else "")
                             + ". Click a point to select its key.")
        self.hist_plot.clear()

    def _drawn_at(self, changes: Any) -> Any:
        """Where changes (one, or an array) are drawn: 0 at the floor, infinity (A all zeros) above
        the largest one."""
        import numpy as np

        return np.where(np.isinf(changes), self._ceiling, np.maximum(changes, self._floor))

    def _on_points_clicked(self, item: Any, points: Any, event: Any = None) -> None:
        """Points overlap at this density: the one nearest the click along the model order wins."""
        if not len(points):
            return
        x = event.pos().x() if event is not None else points[0].pos().x()
        nearest = min(points, key=lambda p: abs(p.pos().x() - x))
        self.key_selected.emit(self.keys[int(self._places[item][nearest.index()])].name)
        self._reveal_current_row()

    def _on_tree_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        key = current.data(diff_tree.KEY_ROLE) if current.isValid() else None
        if key is not None:
            self.key_selected.emit(key.name)
            self._reveal_current_row()

    def _reveal_current_row(self) -> None:
        """Scroll the key table to the row just selected. Selecting it may have cleared the filters,
        and the table lays out its new rows only later: until then it cannot scroll that far."""
        table = self._table
        if table is not None and table.currentIndex().isValid():
            table.doItemsLayout()
            table.scrollTo(table.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)

    def show_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        """The key table's current row changed."""
        self.show_key(current.data(diff_table.KEY_ROLE) if current.isValid() else None)

    def show_key(self, key: KeyDiff | None) -> None:
        """Mark `key` on the plot and overlay its A and B histograms (computed on the worker)."""
        self.cancel()
        if self.change_plot is None or key is None or key_change(key) is None:
            return
        i = self._position[key.name]
        self._marker.setData([i], [float(self._drawn_at(float(key_change(key) or 0.0)))])
        if self._opened is not None and key.values is not None and key.values.status != "skipped":
            job = Job(pair_histograms, self._opened, key, parent=self)
            job.succeeded.connect(self._on_histograms)
            job.finished.connect(self._on_finished)
            self._job = job
            job.start()

    def _on_histograms(self, pair: tuple[TensorStats, TensorStats]) -> None:
        import pyqtgraph as pg

        self.hist_plot.clear()
        self.hist_plot.setTitle(html.escape(pair[0].name), size="9pt")
        for side, stats in zip("AB", pair, strict=True):
            if stats.hist_counts:
                rgb = SIDE_COLOURS[side]
                self.hist_plot.plot(stats.hist_edges, stats.hist_counts, stepMode="center",
                                    fillLevel=0, brush=pg.mkBrush(*rgb, 70), pen=pg.mkPen(rgb, width=2),
                                    name=side)
        self.histograms_ready.emit(pair)

    def _on_finished(self) -> None:
        job = self.sender()
        if job is self._job:
            self._job = None
        if job is not None:
            job.deleteLater()

    def cancel(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            job.succeeded.disconnect()
            job.cancel()

    def is_busy(self) -> bool:
        return self._job is not None


def fit_key_columns(table: QTableView, keys: list[KeyDiff]) -> None:
    """The key table's status, shape and dtype columns fitted to what they hold: room for names."""
    shown = keys[:MEASURED_NAMES]
    fit_text_columns(table, table.horizontalHeader(), {
        diff_table.STATUS: [texts[k.status] for k in shown
                            for texts in (diff_table.STATUS_TEXT, diff_table.MODEL_STATUS_TEXT)],
        diff_table.SHAPE_A: [shape_text(k.shape_a) for k in shown if k.shape_a is not None],
        diff_table.SHAPE_B: [shape_text(k.shape_b) for k in shown if k.shape_b is not None],
        diff_table.DTYPE_A: [k.dtype_a or "" for k in shown],
        diff_table.DTYPE_B: [k.dtype_b or "" for k in shown]})


def _key_name(index: QModelIndex) -> str | None:
    key = index.data(diff_table.KEY_ROLE)
    return key.name if key is not None else None


def row_of_key(model: DiffTableModel, name: str) -> int | None:
    return next((r for r in range(model.rowCount()) if model.key(r).name == name), None)


def _tree(model: DiffTreeModel) -> QTreeView:
    view = QTreeView()
    view.setModel(model)
    view.setUniformRowHeights(True)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    header = view.header()
    fit_text_columns(view, header, {diff_tree.KEYS: ["99,999"], diff_tree.WORST: ["Shape mismatch"],
                                    diff_tree.CHANGE: ["1.23e-05"]})
    header.setProperty("last_width", header.sectionSize(diff_tree.CHANGE))
    return view

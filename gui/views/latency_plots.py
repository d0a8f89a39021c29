"""The checks panel's latency plots (pyqtgraph, imported with the first result): p50/p90/p99 against
batch size, one colour per backend, and grouped p50 bars. Drawn from `LatencyResult.sweep()`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.latency import LatencyResult

SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")  # as the report
PERCENTILES = (("p50_ms", Qt.PenStyle.SolidLine), ("p90_ms", Qt.PenStyle.DashLine),
               ("p99_ms", Qt.PenStyle.DotLine))


def make_plot(widget: QWidget, x_label: str, y_label: str) -> Any:
    import pyqtgraph as pg

    palette = widget.palette()
    plot = pg.PlotWidget(background=palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(text)
        axis.setTextPen(text)
        axis.enableAutoSIPrefix(False)
    plot.setLabel("bottom", x_label)
    plot.setLabel("left", y_label)
    plot.setMenuEnabled(False)
    plot.showGrid(y=True, alpha=0.25)
    plot.setMinimumHeight(150)
    return plot


def legend_html(result: LatencyResult) -> str:
    """Colour chips with each backend's name: one legend for both plots, outside them."""
    chips = [f"<span style='color:{SERIES_COLORS[i % len(SERIES_COLORS)]}'>&#9632;</span>&nbsp;"
             f"{html.escape(name)}" for i, name in enumerate(result.sweep())]
    return "&nbsp;&nbsp;&nbsp;&nbsp;".join(chips)


def draw_latency(line_plot: Any, bar_plot: Any, result: LatencyResult) -> None:
    """Redraw both plots; batch sizes sit at evenly spaced, labelled positions."""
    sweep = result.sweep()
    sizes = sorted({b for series in sweep.values() for b in series["batch"]})
    ticks = [[(i, str(b)) for i, b in enumerate(sizes)]]
    for plot in (line_plot, bar_plot):
        plot.clear()
        plot.getAxis("bottom").setTicks(ticks)
    _draw_lines(line_plot, sweep, sizes)
    _draw_bars(bar_plot, sweep, sizes)
    line_plot.setTitle("solid p50 · dashed p90 · dotted p99",
                       color=line_plot.palette().color(QPalette.ColorRole.Text), size="9pt")
    line_plot.setXRange(-0.3, len(sizes) - 0.7)
    top = max((v for series in sweep.values() for key, _ in PERCENTILES for v in series[key]
               if v is not None), default=1.0)
    line_plot.setYRange(0, top * 1.08)
    bar_plot.setXRange(-0.6, len(sizes) - 0.4)


def _draw_lines(plot: Any, sweep: dict[str, dict[str, list[Any]]], sizes: list[int]) -> None:
    import pyqtgraph as pg

    for i, series in enumerate(sweep.values()):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        for key, style in PERCENTILES:
            pts = [(sizes.index(b), v) for b, v in zip(series["batch"], series[key], strict=True)
                   if v is not None]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            plot.plot(list(xs), list(ys), pen=pg.mkPen(color, width=2, style=style), symbol="o",
                      symbolSize=6, symbolBrush=color, symbolPen=color)


def _draw_bars(plot: Any, sweep: dict[str, dict[str, list[Any]]], sizes: list[int]) -> None:
    import pyqtgraph as pg

    count = max(len(sweep), 1)
    width = 0.8 / count
    for i, series in enumerate(sweep.values()):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        pts = [(sizes.index(b), v) for b, v in zip(series["batch"], series["p50_ms"], strict=True)
               if v is not None]
        if not pts:
            continue
        xs = [x - 0.4 + width * (i + 0.5) for x, _ in pts]
        plot.addItem(pg.BarGraphItem(x=xs, height=[v for _, v in pts], width=width * 0.9,
                                     brush=color, pen=pg.mkPen(color)))

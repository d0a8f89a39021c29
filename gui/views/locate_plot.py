"""The depth plot of a located divergence (pyqtgraph, imported with the first result): each module's
largest difference against its place in execution order, on a log scale; modules within tolerance in
the pass colour, the others in the fail colour, the atol as a dashed line and the first divergence
marked with a star and a labelled vertical line. Drawn from core.checks.locate.Localisation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.locate import Localisation

PASS_COLOR, FAIL_COLOR, LINE_COLOR = "#2ca02c", "#d62728", "#7f7f7f"
FLOOR = 1e-12  # an exact match (0.0) has no logarithm; it is drawn at the bottom


def shown_atol(loc: Localisation) -> float:
    """The atol the modules were held to: the one given, else float32's default."""
    from core.checks.compare import default_tolerance

    return loc.atol if loc.atol is not None else default_tolerance("float32")[0]


def draw_depth(plot: Any, loc: Localisation) -> None:
    """Redraw `plot` (a gui.views.latency_plots.make_plot widget) for `loc`."""
    import pyqtgraph as pg

    plot.clear()
    plot.setLogMode(x=False, y=True)
    depths, errors = loc.depth_series()
    failing = {r.depth for r in loc.rows if r.exceeds}
    floor = min([e for e in errors if e > 0] + [1.0]) / 10 if errors else FLOOR
    ys = [max(e, floor, FLOOR) for e in errors]
    plot.plot(depths, ys, pen=pg.mkPen(LINE_COLOR, width=1))
    brushes = [pg.mkBrush(FAIL_COLOR if d in failing else PASS_COLOR) for d in depths]
    plot.plot(depths, ys, pen=None, symbol="o", symbolSize=7, symbolBrush=brushes, symbolPen=None)
    atol = shown_atol(loc)
    text = plot.palette().color(QPalette.ColorRole.Text)
    tolerance = pg.InfiniteLine(pos=math.log10(max(atol, FLOOR)), angle=0, label=f"atol {atol:g}",
                                pen=pg.mkPen(LINE_COLOR, width=1, style=Qt.PenStyle.DashLine),
                                labelOpts={"position": 0.05, "color": text, "anchors": [(0, 1), (0, 1)]})
    plot.addItem(tolerance)
    first = loc.first_divergence
    if first is not None and first.depth in depths:
        y = ys[depths.index(first.depth)]
        plot.plot([first.depth], [y], pen=None, symbol="star", symbolSize=18,
                  symbolBrush=FAIL_COLOR, symbolPen=pg.mkPen(text))
        side = (1, 0) if first.depth > max(depths) / 2 else (0, 0)  # the label on the roomier side
        marker = pg.InfiniteLine(pos=first.depth, angle=90, label=f"first divergence: {first.module}",
                                 pen=pg.mkPen(FAIL_COLOR, width=1, style=Qt.PenStyle.DotLine),
                                 labelOpts={"position": 0.82, "color": text, "anchors": [side, side]})
        plot.addItem(marker)
    plot.setXRange(0.5, (max(depths) if depths else 1) + 0.5)

"""The histogram's log-count toggle: a tail bin of one value is flat in linear scale, visible in log."""

from __future__ import annotations

import math

from pytestqt.qtbot import QtBot

from core.formats import open_checkpoint
from core.stats import TensorStats
from gui.views.tensor_detail import TensorDetailView
from tests.fixtures.models import FixtureFiles

COUNTS = [1, 0, 40, 100_000, 90_000, 30, 0, 2]


def heavy_tailed(_checkpoint: object, name: str, section: str | None = None,
                 progress: object = None, bins: int = 64) -> TensorStats:
    edges = [-4 + i for i in range(len(COUNTS) + 1)]
    return TensorStats(name, "float32", (sum(COUNTS),), sum(COUNTS), hist_counts=COUNTS,
                       hist_edges=[float(e) for e in edges])


def bar_heights(detail: TensorDetailView) -> list[float]:
    items = detail._plot.getPlotItem().listDataItems()
    assert len(items) == 1
    return [float(y) for y in items[0].getData()[1]]


def test_log_count_toggle_shows_the_tails(qtbot: QtBot, files: FixtureFiles) -> None:
    checkpoint = open_checkpoint(files["state_dict"])
    detail = TensorDetailView(stats_func=heavy_tailed)
    qtbot.addWidget(detail)
    detail.resize(360, 600)
    detail.show()
    assert not detail.log_counts.isVisible()  # nothing to scale before a histogram
    detail.set_checkpoint(checkpoint)
    with qtbot.waitSignal(detail.stats_ready, timeout=10_000):
        detail.show_tensor(checkpoint.find("fc.weight"))
    assert detail.log_counts.isVisible() and not detail.log_counts.isChecked()
    plot_item = detail._plot.getPlotItem()
    assert bar_heights(detail) == COUNTS
    box = plot_item.getViewBox()
    qtbot.waitUntil(lambda: box.viewRange()[1][1] >= 100_000)  # auto-range runs on the next paint
    low, high = box.viewRange()[1]
    assert 1 / (high - low) < 1e-4  # a count of one is under a pixel in linear scale

    detail.log_counts.setChecked(True)
    assert plot_item.getAxis("left").logMode
    heights = bar_heights(detail)
    assert heights[0] == 0.0 and math.isclose(heights[3], 5.0)  # log10 of the counts
    fill_level = plot_item.listDataItems()[0].opts["fillLevel"]
    assert fill_level < heights[0]  # the single-value bin has a visible height above the fill
    qtbot.waitUntil(lambda: box.viewRange()[1][1] < 100)
    low, high = box.viewRange()[1]
    assert low <= fill_level and high >= 5.0
    assert (heights[0] - fill_level) / (high - low) > 0.03  # a few percent of the plot height

    detail.log_counts.setChecked(False)
    assert not plot_item.getAxis("left").logMode and bar_heights(detail) == COUNTS

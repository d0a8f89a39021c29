"""Selecting a tensor computes its statistics on a worker and draws the histogram."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QThreadPool
from pytestqt.qtbot import QtBot

from core.progress import Progress, step
from core.stats import TensorStats
from gui.views.inspect import InspectView
from gui.views.tensor_detail import TensorDetailView
from tests.fixtures.models import FixtureFiles

OpenView = Callable[[Path], InspectView]


def select(view: InspectView, name: str) -> None:
    model = view.tensors.table_model
    row = next(r for r in range(model.rowCount()) if model.tensor(r).name == name)
    view.tensors.table.selectRow(row)


def test_selecting_a_tensor_shows_stats_matching_torch(qtbot: QtBot, open_view: OpenView,
                                                       files: FixtureFiles) -> None:
    view = open_view(files["state_dict"])
    expected = torch.load(files["state_dict"], weights_only=True)["conv.weight"]
    with qtbot.waitSignal(view.detail.stats_ready, timeout=20_000) as blocker:
        select(view, "conv.weight")
    stats: TensorStats = blocker.args[0]
    assert stats.min == pytest.approx(expected.min().item())
    assert stats.max == pytest.approx(expected.max().item())
    assert view.detail.title.text() == "conv.weight"
    assert view.detail.values["Min"].text() == f"{expected.min().item():.6g}"
    assert view.detail.values["Elements"].text() == "108"
    items = view.detail._plot.getPlotItem().listDataItems()
    assert len(items) == 1 and sum(items[0].getData()[1]) == 108
    assert len(stats.hist_counts) == 10  # ~sqrt(108) bins for a small tensor
    assert not view.detail.is_busy()


def test_tree_selection_and_other_sections(qtbot: QtBot, open_view: OpenView,
                                           files: FixtureFiles) -> None:
    view = open_view(files["ema"])
    view.sections.select("ema")
    view.tensors.tabs.setCurrentWidget(view.tensors.tree)
    index = view.tensors.tree_model.index_of_path("bn.running_var")
    with qtbot.waitSignal(view.detail.stats_ready, timeout=20_000) as blocker:
        view.tensors.tree.setCurrentIndex(index)
    expected = torch.load(files["ema"], weights_only=True)["ema"]["bn.running_var"]
    assert blocker.args[0].max == pytest.approx(expected.max().item())
    assert view.detail.title.text() == "bn.running_var"


def slow_stats(checkpoint: object, name: str, section: str | None = None,
               progress: Progress | None = None, bins: int = 64) -> None:
    for i in range(2000):
        step(progress, i, 2000, "Computing statistics")
        time.sleep(0.005)


def test_cancel_stats(qtbot: QtBot, files: FixtureFiles) -> None:
    from core.formats import open_checkpoint

    checkpoint = open_checkpoint(files["state_dict"])
    detail = TensorDetailView(stats_func=slow_stats)
    qtbot.addWidget(detail)
    detail.set_checkpoint(checkpoint)
    detail.show_tensor(checkpoint.find("fc.weight"))
    assert detail.is_busy()
    qtbot.waitUntil(lambda: detail.progress.value() > 0)
    failed: list[str] = []
    detail.stats_failed.connect(failed.append)
    detail.cancel_button.click()
    assert not detail.is_busy() and detail.status.text() == "Cancelled."
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0)
    assert not failed and detail.status.text() == "Cancelled."


def test_stats_error_is_shown_in_the_panel(qtbot: QtBot, files: FixtureFiles) -> None:
    from core.errors import CheckpointError
    from core.formats import open_checkpoint

    def broken(*_args: object, **_kwargs: object) -> None:
        raise CheckpointError("Reading tensors of type qint8 is not supported.")

    checkpoint = open_checkpoint(files["state_dict"])
    detail = TensorDetailView(stats_func=broken)
    qtbot.addWidget(detail)
    detail.set_checkpoint(checkpoint)
    with qtbot.waitSignal(detail.stats_failed) as blocker:
        detail.show_tensor(checkpoint.find("fc.weight"))
    assert blocker.args == ["Reading tensors of type qint8 is not supported."]
    assert detail.status.text() == blocker.args[0]
    qtbot.waitUntil(lambda: not detail.is_busy())


def test_a_quantized_tensor_shows_its_scheme_and_real_values(qtbot: QtBot, open_view: OpenView,
                                                             tmp_path: Path) -> None:
    weight = torch.quantize_per_tensor(torch.linspace(-1, 1, 12).reshape(3, 4), 0.05, 3, torch.qint8)
    path = tmp_path / "q.pt"
    torch.save({"layer.weight": weight}, path)
    view = open_view(path)
    with qtbot.waitSignal(view.detail.stats_ready, timeout=20_000) as blocker:
        select(view, "layer.weight")
    stats: TensorStats = blocker.args[0]
    assert "qint8" in view.detail.subtitle.text()
    assert "per-tensor affine, scale 0.05, zero point 3" in view.detail.subtitle.text()
    assert stats.min == pytest.approx(weight.dequantize().min().item())
    assert stats.max == pytest.approx(weight.dequantize().max().item())

"""The convert panel's precision check: choosing float16 shows, before Convert is clicked, what the cast
does to the values (computed on the worker); a value of 1e5 names its tensor and Convert stays
refused until "Allow overflow" is ticked; bfloat16 keeps the range and converts at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from safetensors.torch import load_file, save_file

from gui.views.convert import ConvertPanel
from gui.views.convert_precision import COLUMNS
from tests.gui.conftest import screenshot, shown


@pytest.fixture()
def panel(qtbot: QtBot, tmp_path: Path) -> ConvertPanel:
    widget = shown(qtbot, ConvertPanel(), (1100, 760))
    (tmp_path / "out").mkdir()
    widget.out_dir.setText(str(tmp_path / "out"))
    return widget


@pytest.fixture()
def risky(tmp_path: Path) -> Path:
    """One tensor with a value of 1e5 (above float16's 65504), one with a value float16 flushes to
    zero, one harmless."""
    big = torch.randn(4, 8)
    big[1, 2] = 1e5
    tiny = torch.ones(16)
    tiny[3] = 1e-9
    path = tmp_path / "risky.safetensors"
    save_file({"encoder.big.weight": big, "encoder.tiny.bias": tiny, "head.weight": torch.randn(3, 8)},
              path)
    return path


def choose(qtbot: QtBot, panel: ConvertPanel, path: Path, dtype: str) -> None:
    panel.set_sources([str(path)])
    qtbot.waitUntil(lambda: panel.checkpoint is not None and not panel.is_busy(), timeout=10_000)
    panel.dtype.setCurrentIndex(panel.dtype.findData(dtype))
    assert panel.precision.isVisible()
    qtbot.waitUntil(lambda: panel.precision.report is not None, timeout=20_000)


def rows(panel: ConvertPanel) -> list[tuple[str, ...]]:
    t = panel.precision.table
    return [tuple(t.item(r, c).text() for c in range(len(COLUMNS))) for r in range(t.rowCount())]


def test_an_overflowing_fp16_cast_is_named_and_refused_until_allowed(
        qtbot: QtBot, panel: ConvertPanel, risky: Path, tmp_path: Path) -> None:
    choose(qtbot, panel, risky, "fp16")
    report = panel.precision.report
    assert report.overflowing == ["encoder.big.weight"] and report.overflow == 1
    assert [r[:5] for r in rows(panel)] == [("encoder.big.weight", "float32", "1", "0", "0"),
                                            ("encoder.tiny.bias", "float32", "0", "1", "0")]
    summary = panel.precision.summary.text()
    assert "1 value(s) are larger than 65504 and would become infinity" in summary
    assert "'encoder.big.weight'" in summary
    assert not panel.convert_button.isEnabled()
    assert "tick 'Allow overflow'" in panel.convert_button.toolTip()
    assert panel.precision.hint.text() == panel.convert_button.toolTip()
    qtbot.wait(100)  # let the layout settle before the screenshot
    screenshot(panel, tmp_path, "convert-precision")
    panel.start()  # refused while not allowed: nothing is queued or written
    assert panel.queue.rowCount() == 0 and not list((tmp_path / "out").iterdir())

    qtbot.mouseClick(panel.precision.allow, Qt.MouseButton.LeftButton)
    assert panel.convert_button.isEnabled() and panel.convert_button.toolTip() == ""
    assert panel.precision.hint.text() == ""
    with qtbot.waitSignal(panel.batch_finished, timeout=30_000):
        qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    [result] = panel.results
    written = load_file(result.outputs[0]["path"])
    assert written["encoder.big.weight"].dtype == torch.float16
    assert torch.isinf(written["encoder.big.weight"]).sum() == 1
    assert "became infinity" in panel.log.toPlainText()


def test_without_the_tick_core_refuses_a_dropped_file_too(qtbot: QtBot, panel: ConvertPanel,
                                                          risky: Path, tmp_path: Path) -> None:
    panel.dtype.setCurrentIndex(panel.dtype.findData("fp16"))
    from tests.gui.test_convert_panel import run_drop

    run_drop(qtbot, panel, [risky])
    assert not panel.results and panel.queue.states == ["failed"]
    assert "encoder.big.weight" in panel.queue.status_text(0)
    assert not list((tmp_path / "out").iterdir())


def test_bf16_keeps_the_range_and_converts(qtbot: QtBot, panel: ConvertPanel, risky: Path) -> None:
    choose(qtbot, panel, risky, "bf16")
    report = panel.precision.report
    assert report.dtype == "bfloat16" and report.overflow == 0 and report.flushed == 0
    assert "No value overflows" in panel.precision.summary.text()
    assert panel.convert_button.isEnabled()
    panel.dtype.setCurrentIndex(panel.dtype.findData(None))  # no cast: no check shown
    assert not panel.precision.isVisible() and panel.convert_button.isEnabled()


def test_changed_options_are_checked_again_before_converting(qtbot: QtBot, panel: ConvertPanel,
                                                             risky: Path) -> None:
    choose(qtbot, panel, risky, "fp16")
    assert not panel.convert_button.isEnabled()
    panel.drop.setText("encoder.big.*")  # typed, not yet confirmed with Enter: the report is stale
    assert not panel.precision.is_current(panel.checkpoint, "fp16", panel.options())
    panel.drop.editingFinished.emit()
    qtbot.waitUntil(lambda: panel.precision.report is not None, timeout=20_000)
    assert panel.precision.report.overflow == 0
    assert [r[0] for r in rows(panel)] == ["encoder.tiny.bias"]
    assert panel.convert_button.isEnabled()

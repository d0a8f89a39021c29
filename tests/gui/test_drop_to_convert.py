"""Drop-to-convert: dropped files are queued, each converted with the current options, each with its
own status; one corrupt file fails with its sentence while the others are written; one file can be
cancelled alone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolBar
from pytestqt.qtbot import QtBot

from core.errors import CheckpointError
from core.formats import open_checkpoint
from gui.app import MainWindow
from gui.views import convert_queue as q
from gui.views.convert import ConvertPanel
from tests.fixtures.models import FixtureFiles
from tests.gui.test_convert_panel import drop_on, run_drop, slow_convert


def make_panel(qtbot: QtBot, out: Path, **kwargs: object) -> ConvertPanel:
    panel = ConvertPanel(**kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.resize(1100, 700)
    panel.show()
    out.mkdir()
    panel.out_dir.setText(str(out))
    return panel


def test_three_dropped_files_one_corrupt(qtbot: QtBot, files: FixtureFiles, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(3000))
    with pytest.raises(CheckpointError) as expected:
        open_checkpoint(bad)
    out = tmp_path / "out"
    panel = make_panel(qtbot, out)
    panel.dtype.setCurrentIndex(panel.dtype.findData("fp16"))  # the current options apply to each
    run_drop(qtbot, panel, [files["state_dict"], bad, files["safetensors"]])
    queue = panel.queue
    assert queue.isVisible() and queue.rowCount() == 3
    assert [queue.item(r, q.FILE).text() for r in range(3)] == ["state_dict.pt", "broken.pt",
                                                                 "model.safetensors"]
    assert queue.states == [q.WRITTEN, q.FAILED, q.WRITTEN]
    assert queue.status_text(1) == expected.value.message
    assert "Traceback" not in queue.item(1, q.STATUS).toolTip()
    assert queue.status_text(0) == "Written: state_dict.safetensors"
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "state_dict.safetensors"]
    for result in panel.results:
        assert result.verification["passed"]
        assert {to for _old, to in result.dtype_changes.values()} == {"float16"}
    assert [name for name, _message, _details in panel.errors] == ["broken.pt"]
    assert not any(queue.cancel_button(r).isEnabled() for r in range(3))


def test_cancel_one_file_and_the_others_go_on(qtbot: QtBot, files: FixtureFiles,
                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    panel = make_panel(qtbot, out, converter=slow_convert)
    panel.target.setCurrentIndex(panel.target.findData("pt"))
    queue = panel.queue
    with qtbot.waitSignal(panel.batch_finished, timeout=60_000):
        drop_on(panel, [files["training"], files["state_dict"], files["safetensors"]])
        assert queue.states == [q.RUNNING, q.WAITING, q.WAITING]
        qtbot.mouseClick(queue.cancel_button(1), Qt.MouseButton.LeftButton)  # waiting: never starts
        assert queue.states[1] == q.CANCELLED
        qtbot.waitUntil(lambda: "%" in queue.status_text(0), timeout=10_000)
        qtbot.mouseClick(queue.cancel_button(0), Qt.MouseButton.LeftButton)  # running: stops alone
    qtbot.waitUntil(lambda: not panel.is_busy())
    assert queue.states == [q.CANCELLED, q.CANCELLED, q.WRITTEN]
    assert [p.name for p in out.iterdir()] == ["model.pt"]  # nothing of the cancelled ones
    assert [Path(r.source).name for r in panel.results] == ["model.safetensors"]
    assert "Cancelled: nothing was written for training.ckpt." in panel.log.toPlainText()
    assert panel.errors == []


def test_drop_on_the_toolbar_convert_button(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                                            tmp_path: Path) -> None:
    sources = tmp_path / "src"
    sources.mkdir()
    for key in ("state_dict", "lightning"):
        shutil.copy(files[key], sources / files[key].name)
    button = window.findChild(QToolBar, "MainToolBar").widgetForAction(window.convert_action)
    drop_on(button, [sources / "state_dict.pt", sources / "lightning.ckpt"])
    panel = window.tabs.currentWidget()
    assert isinstance(panel, ConvertPanel) and not window.views()  # converting, not inspecting
    qtbot.waitUntil(lambda: not panel.is_busy() and len(panel.results) == 2, timeout=30_000)
    assert panel.queue.states == [q.WRITTEN, q.WRITTEN]
    assert sorted(p.name for p in sources.glob("*.safetensors")) == ["lightning.safetensors",
                                                                   "state_dict.safetensors"]

"""The main window and the inspect view, driven like a user would on the tiny fixture files."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.progress import Progress, step
from gui import app as app_module
from gui.app import MainWindow, recent_files
from gui.models import module_tree
from gui.views.inspect import CODE_BANNER, InspectView
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import wait_done

OpenView = Callable[[Path], InspectView]


def drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)


def visible_dialogs() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def test_drop_one_file_shows_every_tensor(qtbot: QtBot, window: MainWindow,
                                          files: FixtureFiles) -> None:
    drop(window, [files["state_dict"]])
    assert len(window.views()) == 1
    view = wait_done(qtbot, window.views()[0])
    assert view.state == "ready", view.message.message.text()
    expected = open_checkpoint(files["state_dict"]).sections["model"].tensors
    assert view.tensors.table_model.rowCount() == len(expected) == 11
    assert "11 tensors" in view.totals.text()
    assert not view.banner.isVisible()
    assert window.windowTitle().startswith("state_dict.pt")
    assert recent_files()[0] == str(files["state_dict"].resolve())


def test_drop_three_files_opens_three_tabs(qtbot: QtBot, window: MainWindow,
                                           files: FixtureFiles) -> None:
    drop(window, [files["state_dict"], files["safetensors"], files["ema"]])  # two: the diff view
    views = window.views()
    assert [Path(v.path).name for v in views] == ["state_dict.pt", "model.safetensors", "ema.pt"]
    for view in views:
        assert wait_done(qtbot, view).state == "ready"
    assert window.open_path(files["state_dict"]) is views[0]  # already open: switch to it
    window.close_tab(0)
    assert len(window.views()) == 2


def test_filter_reduces_rows(qtbot: QtBot, open_view: OpenView, files: FixtureFiles) -> None:
    view = open_view(files["safetensors"])
    panel = view.tensors
    qtbot.keyClicks(panel.filter, "bn.")
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 5)
    assert all(panel.table_model.tensor(r).name.startswith("bn.") for r in range(5))
    assert "5 of 10" in panel.count.text()
    panel.filter.setText("*.bias")
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 3)  # conv, bn, fc
    panel.filter.clear()
    qtbot.waitUntil(lambda: panel.table_model.rowCount() == 10)


def test_ctrl_f_focuses_the_filter(qtbot: QtBot, window: MainWindow, open_view: OpenView,
                                   files: FixtureFiles) -> None:
    view = open_view(files["state_dict"])
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(view.tensors.filter.hasFocus)


def test_tree_subtotal_equals_sum_of_its_tensors(qtbot: QtBot, open_view: OpenView,
                                                 files: FixtureFiles) -> None:
    view = open_view(files["state_dict"])
    view.tensors.tabs.setCurrentWidget(view.tensors.tree)
    model = view.tensors.tree_model
    bn = model.index_of_path("bn")
    assert bn.isValid()
    tensors = [t for t in open_checkpoint(files["state_dict"]).sections["model"].tensors.values()
               if t.name.startswith("bn.")]
    node = model.node(bn)
    assert node.nbytes == sum(t.nbytes for t in tensors)
    assert node.parameters == sum(t.numel for t in tensors if t.role != "buffer") == 8
    leaves = [model.index(r, 0, bn).data(module_tree.TENSOR_ROLE) for r in range(model.rowCount(bn))]
    assert sorted(t.name for t in leaves) == sorted(t.name for t in tensors)


def test_findings_banner_for_pickled_module(qtbot: QtBot, open_view: OpenView,
                                            files: FixtureFiles) -> None:
    view = open_view(files["full_module"])
    assert view.state == "ready"
    assert view.banner.isVisible()
    assert view.banner.title.text() == CODE_BANNER
    details = view.banner.details
    assert not details.text.isVisible()
    details.toggle.click()
    assert details.text.isVisible()
    assert "tests.fixtures.models.TinyNet" in details.text.toPlainText()
    assert view.tensors.table_model.rowCount() == 11


def test_corrupt_file_shows_plain_error(qtbot: QtBot, open_view: OpenView, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(3000))
    with pytest.raises(CheckpointError) as expected:
        open_checkpoint(bad)
    view = open_view(bad)
    assert view.state == "error"
    assert view.pages.currentWidget() is view.message
    assert view.message.message.text() == expected.value.message
    assert "Traceback" not in view.message.message.text() + view.message.details.text.toPlainText()
    boxes = visible_dialogs()  # the same sentence in a message box, details folded away
    assert [b.text() for b in boxes] == [expected.value.message]
    assert "Traceback" not in boxes[0].detailedText()
    boxes[0].close()


def test_random_bytes_shows_plain_error(qtbot: QtBot, open_view: OpenView, tmp_path: Path) -> None:
    bad = tmp_path / "noise.bin"
    bad.write_bytes(os.urandom(5000))
    view = open_view(bad)
    assert view.state == "error"
    assert "not a checkpoint format" in view.message.message.text()


def test_training_checkpoint_sections_and_values(qtbot: QtBot, open_view: OpenView,
                                                 files: FixtureFiles) -> None:
    view = open_view(files["training"])
    sections = view.sections
    assert [sections.list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(sections.list.count())] == ["model", "optimizer", "training"]
    assert sections.current() == "model"
    assert "11 tensors" in sections.list.item(0).text()
    sections.select("training")
    keys = [sections.values.topLevelItem(i).text(0) for i in range(sections.values.topLevelItemCount())]
    assert keys == ["epoch", "loss", "torch_version"]
    assert sections.values.topLevelItem(0).text(1) == "3"
    assert view.tensors.stack.currentWidget() is view.tensors.empty
    sections.select("optimizer")
    assert view.tensors.table_model.rowCount() == 21


def slow_opener(path: str, progress: Progress | None = None) -> None:
    for i in range(2000):  # ~10 s unless cancelled
        step(progress, i, 2000, "Reading")
        time.sleep(0.005)
    raise AssertionError("not cancelled")


def test_cancel_while_opening(qtbot: QtBot, files: FixtureFiles) -> None:
    view = InspectView(files["state_dict"], opener=slow_opener)
    qtbot.addWidget(view)
    view.show()
    assert view.state == "loading"
    qtbot.waitUntil(lambda: view.loading_bar.value() > 0)
    with qtbot.waitSignal(view.cancelled, timeout=5_000):
        qtbot.mouseClick(view.loading.findChild(type(view.message.button)), Qt.MouseButton.LeftButton)
    assert view.state == "cancelled"
    assert "cancelled" in view.message.message.text()
    assert not visible_dialogs()


def test_about_shows_versions_without_importing_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    text = app_module.about_text()
    assert "Python" in text and "Qt" in text and "0.1.0" in text
    assert f"<br>PyTorch {torch.__version__}" in text  # already imported here: shown
    monkeypatch.delitem(sys.modules, "torch")
    assert "<br>PyTorch" not in app_module.about_text()
    assert "torch" not in sys.modules


def test_geometry_is_remembered(qtbot: QtBot) -> None:
    first = MainWindow()
    qtbot.addWidget(first)
    first.resize(700, 500)  # the offscreen screen is 800x600
    first.show()
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (700, 500)


def test_200k_keys_in_the_view(qtbot: QtBot, tmp_path: Path) -> None:
    from core.inspect import inspect_checkpoint
    from core.model import Checkpoint, Section
    from tests.gui.test_models import BIG, synthetic

    section = Section("model", {t.name: t for t in synthetic(BIG)})
    checkpoint = Checkpoint(tmp_path / "big.pt", "synthetic", {"model": section}, weights="model")
    result = inspect_checkpoint(checkpoint)
    view = InspectView(checkpoint.path, opener=lambda _path: (checkpoint, result))
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    start = time.perf_counter()
    wait_done(qtbot, view)
    shown = time.perf_counter() - start
    assert view.tensors.table_model.rowCount() == BIG
    start = time.perf_counter()
    view.tensors.filter.setText("layers.19?.block1.*")
    view.tensors.apply_filter()
    view.tensors.tabs.setCurrentWidget(view.tensors.tree)
    filtered = time.perf_counter() - start
    assert view.tensors.table_model.rowCount() == 10 * 50
    assert view.tensors.tree_model.root.tensors == 500
    assert shown < 5 and filtered < 3, (shown, filtered)


def test_recent_files_menu_reopens(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    wait_done(qtbot, window.open_path(files["safetensors"]))
    window.close_tab(0)
    assert window.views() == []
    window._fill_recent_menu()
    action = next(a for a in window.recent_menu.actions() if a.text().endswith("model.safetensors"))
    action.trigger()
    assert [Path(v.path).name for v in window.views()] == ["model.safetensors"]
    wait_done(qtbot, window.views()[0])

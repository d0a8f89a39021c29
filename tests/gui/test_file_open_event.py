"""Files the OS hands over as events (macOS double-click / "Open With") open like dropped ones."""

from __future__ import annotations

from PySide6.QtCore import QEvent
from PySide6.QtGui import QFileOpenEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from gui.app import FileOpenRouter, MainWindow
from gui.views.inspect import InspectView
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import wait_done


def test_a_file_open_event_opens_the_file(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    app = QApplication.instance()
    router = FileOpenRouter(window)
    app.installEventFilter(router)
    try:
        QApplication.sendEvent(app, QFileOpenEvent(str(files["safetensors"])))
    finally:
        app.removeEventFilter(router)
    view = window.tabs.currentWidget()
    assert isinstance(view, InspectView) and view.path == str(files["safetensors"].resolve())
    wait_done(qtbot, view)
    assert view.tensors.table_model.rowCount() == 10  # every tensor but the tied head.weight


def test_other_events_pass_through(window: MainWindow) -> None:
    router = FileOpenRouter(window)
    before = window.tabs.count()
    assert router.eventFilter(window, QEvent(QEvent.Type.Show)) is False
    assert router.eventFilter(window, QFileOpenEvent("")) is False  # nothing named: nothing opened
    assert window.tabs.count() == before

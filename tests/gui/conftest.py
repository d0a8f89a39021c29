"""pytest-qt fixtures for the GUI: isolated QSettings, a main window, and a guard that fails any test
leaving work running on the QThreadPool (as napari does)."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from PySide6.QtCore import QCoreApplication, QSettings, QThreadPool
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from gui.app import MainWindow
from gui.gc_guard import collect_on_gui_thread, stop_collecting_on_gui_thread
from gui.views.inspect import InspectView

W = TypeVar("W", bound=QWidget)

GRACE_MS = 500  # a cancelled job may take a moment to notice the cancel token


@pytest.fixture(autouse=True, scope="package")
def _collect_on_the_gui_thread(qapp: object) -> Iterator[None]:
    """As the app does: no automatic collection (it could run on a worker thread), a GUI-thread
    timer instead. Automatic collection is back on for the tests after this package."""
    collect_on_gui_thread()
    yield
    stop_collecting_on_gui_thread()


@pytest.fixture(autouse=True)
def _isolated_settings(qapp: object, tmp_path: Path) -> None:
    """Every test gets its own empty QSettings, never the user's."""
    QCoreApplication.setOrganizationName("Checkpoint Studio Tests")
    QCoreApplication.setApplicationName("Checkpoint Studio Tests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))


@pytest.fixture(autouse=True)
def _no_dangling_workers(qapp: object) -> Iterator[None]:
    yield
    _wait_for_target_probe()
    pool = QThreadPool.globalInstance()
    if pool.activeThreadCount() == 0 or pool.waitForDone(GRACE_MS):
        # The test's widgets are closed by now; collect their reference cycles here, on the GUI
        # thread. Left to chance, the collection can run on the next test's worker thread, and a
        # QWidget destroyed there crashes the process (seen: a segfault in a convert job).
        gc.collect()
        return
    running = pool.activeThreadCount()
    pool.waitForDone(30_000)  # don't let the next test inherit it
    pytest.fail(f"The test left {running} job(s) running on the QThreadPool; wait for them "
                "(qtbot.waitSignal / waitUntil) or cancel them before the test ends.")


def _wait_for_target_probe(timeout_s: float = 60.0) -> None:
    """The export panel asks once per process which targets work here (core.capabilities: a
    moment, longer on a busy machine); that app-wide probe is not work a test left behind."""
    from gui.views.export_targets import TargetProbe

    probe = TargetProbe._shared
    deadline = time.monotonic() + timeout_s
    while probe is not None and probe.is_running() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture()
def window(qtbot: QtBot) -> MainWindow:
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    return win


def wait_done(qtbot: QtBot, view: InspectView, timeout: int = 20_000) -> InspectView:
    """Wait until a view has finished opening (ready, error or cancelled)."""
    qtbot.waitUntil(lambda: view.state in ("ready", "error", "cancelled"), timeout=timeout)
    return view


@pytest.fixture()
def open_view(qtbot: QtBot, window: MainWindow) -> Callable[[Path], InspectView]:
    def _open(path: Path) -> InspectView:
        return wait_done(qtbot, window.open_path(path))

    return _open


def screenshot(widget: QWidget, tmp_path: Path, name: str) -> Path:
    """Save what `widget` shows as NAME.png in $CKPT_STUDIO_SHOTS (a folder, for people to look
    at) or the test's tmp folder; layout requests climb one parent per pass, so a few passes of
    the event loop come first."""
    folder = Path(os.environ.get("CKPT_STUDIO_SHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    for _ in range(5):
        QApplication.processEvents()
    assert widget.grab().save(str(path)), path
    assert path.stat().st_size > 10_000  # a drawn widget, not an empty image
    return path


def shown(qtbot: QtBot, widget: W, size: tuple[int, int] = (1280, 800)) -> W:
    """`widget` shown at the size the panel tests use, closed with the test."""
    qtbot.addWidget(widget)
    widget.resize(*size)
    widget.show()
    return widget

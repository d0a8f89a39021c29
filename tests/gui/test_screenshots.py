"""Screenshots of the window with real content, saved for people to look at.

Written under the test's tmp_path; a copy of each also goes to the system temp folder
(/tmp/ckpt-studio-*.png) so a reviewer can open them after the run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pytestqt.qtbot import QtBot

from gui.app import MainWindow
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import wait_done


def save(window: MainWindow, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "artifacts" / f"ckpt-studio-{name}.png"
    path.parent.mkdir(exist_ok=True)
    assert window.grab().save(str(path))
    shutil.copy(path, Path(tempfile.gettempdir()) / path.name)
    return path


def test_inspect_screenshots(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                             tmp_path: Path) -> None:
    view = wait_done(qtbot, window.open_path(files["training"]))
    assert view.state == "ready"
    model = view.tensors.table_model
    row = next(r for r in range(model.rowCount()) if model.tensor(r).name == "conv.weight")
    with qtbot.waitSignal(view.detail.stats_ready, timeout=20_000):
        view.tensors.table.selectRow(row)
    qtbot.wait(50)
    inspect = save(window, tmp_path, "inspect")
    view.tensors.tabs.setCurrentWidget(view.tensors.tree)
    view.sections.select("training")
    view.sections.select("model")
    qtbot.wait(50)
    modules = save(window, tmp_path, "modules")
    assert inspect.stat().st_size > 10_000 and modules.stat().st_size > 10_000


def test_empty_window_screenshot(window: MainWindow, tmp_path: Path) -> None:
    assert save(window, tmp_path, "empty").exists()


def test_error_screenshot(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    view = wait_done(qtbot, window.open_path(bad))
    assert view.state == "error"
    view.message.details.toggle.click()
    assert save(window, tmp_path, "error").exists()

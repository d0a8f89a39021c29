"""Drives the app on a real X server (run by tests/gui/test_real_x.py with DISPLAY set) and captures
the screen with ImageMagick's `import -window root` at three scenes: the inspect view of a BERT-like
model folder, the diff's module tree, and the diff's relative-change plot.

    python -m tests.gui.real_x_scenes OUT_DIR MODEL_FOLDER A B
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QAbstractItemView

from gui.app import MainWindow, create_app
from gui.models import diff_tree
from gui.views.diff import DiffView
from gui.views.inspect import InspectView

SCREEN = (1400, 900)
SCENES = ("inspect-bert.png", "diff-tree.png", "diff-change-plot.png")


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the app did not get there in time")
        QCoreApplication.processEvents()
        time.sleep(0.01)


def settle(seconds: float = 0.8) -> None:
    """Let the window repaint on the X server before it is captured."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def capture(out: Path) -> None:
    settle()
    subprocess.run(["import", "-window", "root", str(out)], check=True, timeout=60)


def inspect_scene(window: MainWindow, folder: Path, out: Path) -> None:
    view = window.open_path(folder)
    assert isinstance(view, InspectView)
    wait_until(lambda: view.state == "ready")
    model = view.tensors.table_model
    name = "encoder.layer.3.attention.self.query.weight"
    view.tensors.table.selectRow(next(r for r in range(model.rowCount()) if model.tensor(r).name == name))
    wait_until(lambda: view.detail.last_stats is not None)
    capture(out / SCENES[0])


def diff_scenes(window: MainWindow, a: Path, b: Path, out: Path) -> None:
    view = window.open_diff(a, b)
    assert isinstance(view, DiffView)
    wait_until(lambda: view.state == "ready" and not view.is_busy())
    view.compare_values()
    wait_until(lambda: view.opened is not None and view.opened.result.values_compared
               and not view.is_busy())
    settle()  # the plots' room is laid out first, so the selected row is scrolled into what stays in view
    tree = view.insight.tree
    tree.collapseAll()
    tree.expand(view.insight.tree_model.index_of_path("encoder"))
    tree.expand(view.insight.tree_model.index_of_path("encoder.layer"))
    tree.setCurrentIndex(view.insight.tree_model.index_of_path("encoder.layer.11").siblingAtColumn(
        diff_tree.NAME))
    view.select_key("encoder.layer.11.attention.self.key.weight")
    wait_until(lambda: not view.insight.is_busy())
    settle()
    table = view.table
    assert table.viewport().rect().contains(table.visualRect(table.currentIndex())), "row not in view"
    capture(out / SCENES[1])
    splitter = view.insight.parentWidget()
    if splitter is not None and hasattr(splitter, "setSizes"):
        splitter.setSizes([260, 520, 0])  # the plots get the room
    settle()
    table.scrollTo(table.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)
    capture(out / SCENES[2])


def main(argv: list[str]) -> int:
    out, folder, a, b = (Path(p) for p in argv)
    app = create_app()
    window = MainWindow()
    window.setGeometry(0, 0, *SCREEN)  # no window manager on Xvfb: the window is the screen
    window.show()
    inspect_scene(window, folder, out)
    diff_scenes(window, a, b, out)
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

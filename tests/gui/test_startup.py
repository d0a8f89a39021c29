"""The GUI path never imports torch to open and show a file, and the app turns automatic garbage
collection off for its GUI-thread collector (checked in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.models import FixtureFiles

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json, sys, time
start = time.perf_counter()
from PySide6.QtCore import QTimer
from gui.app import MainWindow, create_app
app = create_app()
window = MainWindow()
window.show()
views = window.open_files(sys.argv[1:])
ready = lambda: all(v.state != "loading" for v in views)
def poll():
    if ready():
        app.quit()
    else:
        QTimer.singleShot(10, poll)
QTimer.singleShot(0, poll)
QTimer.singleShot(60_000, app.quit)
app.exec()
print(json.dumps({"states": [v.state for v in views],
                  "rows": [v.tensors.table_model.rowCount() for v in views],
                  "seconds": time.perf_counter() - start, "automatic_gc": gc.isenabled(),
                  "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def test_opening_files_in_the_window_does_not_import_torch(files: FixtureFiles,
                                                             tmp_path: Path) -> None:
    paths = [str(files[k]) for k in ("state_dict", "safetensors", "training", "full_module")]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path),
           "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *paths], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["states"] == ["ready"] * 4, proc.stderr
    assert report["rows"] == [11, 10, 11, 11]
    assert report["torch"] == []
    assert report["automatic_gc"] is False  # gui.gc_guard: collections run on the GUI thread's timer


def test_no_screen_gives_a_sentence_not_a_qt_abort() -> None:
    import subprocess
    import sys

    from gui.app import has_screen

    assert not has_screen({}) or not sys.platform.startswith("linux")
    assert has_screen({"QT_QPA_PLATFORM": "offscreen"}) and has_screen({"DISPLAY": ":0"})
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "core.cli"], env=env, capture_output=True,
                          text=True, timeout=60)
    if sys.platform.startswith("linux"):
        assert proc.returncode == 2
        assert "needs a graphical session" in proc.stderr and "Traceback" not in proc.stderr

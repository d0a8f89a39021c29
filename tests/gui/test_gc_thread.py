"""The cyclic garbage collector runs on the GUI thread only, never on a worker thread, where it
could destroy Qt objects and crash the app. Every collection's thread is recorded with
`gc.callbacks` while the panels run long jobs (convert, value diff, parity)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pytestqt.qtbot import QtBot

from gui.app import MainWindow
from gui.gc_guard import collect_on_gui_thread, stop_collecting_on_gui_thread
from gui.views.checks import ChecksPanel
from gui.views.convert import ConvertPanel
from gui.worker import Job
from tests.fixtures.models import FixtureFiles
from tests.gui.test_checks_panel import Prompt
from tests.gui.test_checks_panel import run as run_check
from tests.gui.test_convert_panel import run_drop
from tests.gui.test_diff_view import open_diff, wait_diff

TENSORS = 4000  # enough small objects per job that automatic collection would trigger many times


class Collections:
    """Thread idents of every collection that starts while recording."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.threads.append(threading.get_ident())

    def on_workers(self) -> list[int]:
        return [t for t in self.threads if t != threading.main_thread().ident]


@pytest.fixture()
def collections() -> Iterator[Collections]:
    recorder = Collections()
    gc.callbacks.append(recorder)
    yield recorder
    gc.callbacks.remove(recorder)


def many_tensors(path: Path, shift: float = 0.0) -> Path:
    torch.save({f"block.{i}.weight": torch.full((4, 4), float(i) + shift) for i in range(TENSORS)}, path)
    return path


def allocate_cycles(count: int) -> int:
    """Worker job: builds many small reference cycles, as any object-heavy job does."""
    for _ in range(count):
        a: list[object] = []
        a.append(a)
    return count


def test_no_collection_runs_on_a_worker_during_long_jobs(qtbot: QtBot, window: MainWindow,
                                                         files: FixtureFiles, tmp_path: Path,
                                                         collections: Collections) -> None:
    a, b = many_tensors(tmp_path / "a.pt"), many_tensors(tmp_path / "b.pt", shift=0.5)
    convert = ConvertPanel()
    qtbot.addWidget(convert)
    (tmp_path / "out").mkdir()
    convert.out_dir.setText(str(tmp_path / "out"))
    run_drop(qtbot, convert, [a, b], timeout=120_000)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.safetensors", "b.safetensors"]

    view = open_diff(qtbot, window, a, b)
    with qtbot.waitSignal(view.values_compared, timeout=120_000):
        view.compare_values()
    wait_diff(qtbot, view)
    assert "different" in view.summary.text()

    checks = ChecksPanel()
    qtbot.addWidget(checks)
    checks.trust_prompt = Prompt(True)
    checks.set_artefacts(str(files["torchscript"]), str(files["onnx"]))
    assert run_check(qtbot, checks, checks.parity_button.click) == "done"

    job = Job(allocate_cycles, 200_000, parent=window)
    with qtbot.waitSignal(job.succeeded, timeout=60_000):
        job.start()
    qtbot.wait(3 * 500)  # the GUI-thread timer's turn: it collects what the jobs left
    assert not gc.isenabled()
    assert collections.threads, "no collection at all ran: the GUI-thread timer did not collect"
    assert collections.on_workers() == []


def test_the_recorder_sees_a_collection_on_a_worker_when_automatic_gc_is_on(
        qtbot: QtBot, window: MainWindow, collections: Collections) -> None:
    """The control for the test above: with automatic collection on (as Python starts), the same
    kind of job does collect on its worker thread, and the recorder sees it."""
    stop_collecting_on_gui_thread()
    try:
        job = Job(allocate_cycles, 200_000, parent=window)
        with qtbot.waitSignal(job.succeeded, timeout=60_000):
            job.start()
    finally:
        collect_on_gui_thread()
    assert collections.on_workers()

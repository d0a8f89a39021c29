"""The cyclic garbage collector runs on the GUI thread only, never on a worker thread, where it
could destroy Qt objects and crash the app. Every collection's thread is recorded with
`gc.callbacks` while the panels run long jobs (convert, value diff, parity); the control test runs
the same worker functions with automatic collection on and sees each of them collect on its worker,
so the jobs are long enough for the first test to fail without the GUI-thread collector."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pytestqt.qtbot import QtBot

from core.convert import ConvertOptions
from gui.app import MainWindow
from gui.gc_guard import collect_on_gui_thread, stop_collecting_on_gui_thread
from gui.jobs import run_parity
from gui.views.checks import ChecksPanel
from gui.views.checks_fields import format_points
from gui.views.convert import ConvertPanel
from gui.views.convert_options import Request, convert_request
from gui.views.diff_jobs import open_and_diff, values_diff
from gui.worker import Job
from tests.fixtures.check_models import cnn, export_onnx
from tests.gui.test_checks_panel import Prompt
from tests.gui.test_checks_panel import run as run_check
from tests.gui.test_convert_panel import run_drop
from tests.gui.test_diff_view import open_diff, wait_diff

TENSORS = 4000  # enough small objects per job that automatic collection would trigger many times
BATCHES = [{"batch": size} for size in range(1, 301)]  # parity cases: each leaves a few objects
PHASES = ("convert", "value diff", "parity")


class Collections:
    """Thread idents of every collection that starts while recording, by phase."""

    def __init__(self) -> None:
        self.threads: dict[str, list[int]] = {}
        self.phase = "before"

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.threads.setdefault(self.phase, []).append(threading.get_ident())

    def on_workers(self) -> dict[str, int]:
        """Per phase, how many collections ran off the main (GUI) thread."""
        main = threading.main_thread().ident
        return {phase: sum(t != main for t in threads) for phase, threads in self.threads.items()}

    def total(self) -> int:
        return sum(len(threads) for threads in self.threads.values())


@pytest.fixture()
def collections() -> Iterator[Collections]:
    recorder = Collections()
    gc.callbacks.append(recorder)
    yield recorder
    gc.callbacks.remove(recorder)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return many_tensors(tmp_path / "a.pt"), many_tensors(tmp_path / "b.pt", shift=0.5)


@pytest.fixture()
def parity_models(tmp_path: Path) -> tuple[Path, Path]:
    """A small CNN as TorchScript and as ONNX with a dynamic batch: parity runs it at 300 batch
    sizes, enough work for automatic collection to trigger on the worker."""
    model = cnn()
    torchscript = tmp_path / "cnn.torchscript.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(2, 3, 8, 8)), torchscript)
    return torchscript, export_onnx(model, tmp_path / "cnn.onnx", ["output"])


def many_tensors(path: Path, shift: float = 0.0) -> Path:
    torch.save({f"block.{i}.weight": torch.full((4, 4), float(i) + shift) for i in range(TENSORS)}, path)
    return path


def test_no_collection_runs_on_a_worker_during_long_jobs(qtbot: QtBot, window: MainWindow,
                                                         pair: tuple[Path, Path], tmp_path: Path,
                                                         parity_models: tuple[Path, Path],
                                                         collections: Collections) -> None:
    a, b = pair
    collections.phase = "convert"
    convert = ConvertPanel()
    qtbot.addWidget(convert)
    (tmp_path / "out").mkdir()
    convert.out_dir.setText(str(tmp_path / "out"))
    run_drop(qtbot, convert, [a, b], timeout=120_000)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.safetensors", "b.safetensors"]

    collections.phase = "value diff"
    view = open_diff(qtbot, window, a, b)
    with qtbot.waitSignal(view.values_compared, timeout=120_000):
        view.compare_values()
    wait_diff(qtbot, view)
    assert "different" in view.summary.text()

    collections.phase = "parity"
    checks = ChecksPanel()
    qtbot.addWidget(checks)
    checks.trust_prompt = Prompt(True)
    checks.set_artefacts(*(str(p) for p in parity_models))
    checks.shapes.setText(format_points(BATCHES))
    assert run_check(qtbot, checks, checks.parity_button.click) == "done", checks.banner.message()
    assert checks.parity is not None and len(checks.parity.cases) == len(BATCHES)

    collections.phase = "after"
    qtbot.wait(3 * 500)  # the GUI-thread timer's turn: it collects what the jobs left
    assert collections.on_workers() == {phase: 0 for phase in collections.threads}
    assert collections.total() > 0, "no collection at all ran: the GUI-thread timer did not collect"
    assert not gc.isenabled()


def run_on_worker(qtbot: QtBot, parent: MainWindow, func: Callable[..., Any], *args: Any) -> Any:
    job = Job(func, *args, parent=parent)
    with qtbot.waitSignal(job.succeeded, timeout=120_000) as blocker:
        job.start()
    return blocker.args[0]


def test_the_same_jobs_collect_on_their_worker_when_automatic_gc_is_on(
        qtbot: QtBot, window: MainWindow, pair: tuple[Path, Path], tmp_path: Path,
        parity_models: tuple[Path, Path], collections: Collections) -> None:
    """The control for the test above: the worker functions behind the three panels (no panel or
    other Qt object is made here, so nothing of Qt's can be collected off the GUI thread), with
    automatic collection on as Python starts. Each one collects on its worker, and the recorder
    sees it."""
    a, b = pair
    stop_collecting_on_gui_thread()
    try:
        collections.phase = "convert"
        request = Request(str(a), "safetensors", ConvertOptions(), str(tmp_path), False, None)
        assert run_on_worker(qtbot, window, convert_request, request).verification["passed"]
        opened = open_and_diff(str(a), str(b))
        collections.phase = "value diff"
        assert run_on_worker(qtbot, window, values_diff, opened).result.values_compared
        collections.phase = "parity"
        result = run_on_worker(qtbot, window, run_parity, *(str(p) for p in parity_models), True,
                               None, BATCHES, None, None)
        assert result.passed and len(result.cases) == len(BATCHES), result.reason()
        collections.phase = "after"
    finally:
        collect_on_gui_thread()
    workers = collections.on_workers()
    assert all(workers.get(phase, 0) > 0 for phase in PHASES), workers

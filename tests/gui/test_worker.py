"""gui.worker.Job: result, plain errors, progress and cancel through the core contract."""

from __future__ import annotations

import time

from pytestqt.qtbot import QtBot

from core.errors import CorruptFile
from core.progress import Progress, step
from gui.worker import Job


def add(a: int, b: int) -> int:
    return a + b


def counting(n: int, progress: Progress | None = None) -> int:
    for i in range(n):
        step(progress, i, n, "counting")
        time.sleep(0.001)
    step(progress, n, n, "counting")
    return n


def forever(progress: Progress | None = None) -> None:
    i = 0
    while True:  # only a cancel ends this: step() raises core.errors.Cancelled
        step(progress, i, i + 1, "waiting")
        time.sleep(0.005)
        i += 1


def corrupt() -> None:
    raise CorruptFile("The file is damaged.", "offset 12 past end")


def buggy() -> None:
    raise ZeroDivisionError("division by zero")


def test_result(qtbot: QtBot) -> None:
    job = Job(add, 2, b=3)
    with qtbot.waitSignal(job.succeeded) as blocker:
        job.start()
    assert blocker.args == [5]
    qtbot.waitUntil(lambda: not job.is_running())


def test_progress_reaches_the_gui_thread(qtbot: QtBot) -> None:
    job = Job(counting, 50)
    seen: list[tuple[int, int, str]] = []
    job.progress.connect(lambda d, t, text: seen.append((d, t, text)))
    with qtbot.waitSignal(job.finished, timeout=10_000):
        job.start()
    assert seen and seen[-1] == (50, 50, "counting")
    assert len(seen) < 50  # throttled


def test_checkpoint_error_gives_message_and_details(qtbot: QtBot) -> None:
    job = Job(corrupt)
    with qtbot.waitSignal(job.failed) as blocker:
        job.start()
    assert blocker.args == ["The file is damaged.", "offset 12 past end"]
    qtbot.waitUntil(lambda: not job.is_running())


def test_unexpected_error_is_a_plain_sentence(qtbot: QtBot) -> None:
    job = Job(buggy)
    with qtbot.waitSignal(job.failed) as blocker:
        job.start()
    message, details = blocker.args
    assert message == "Something went wrong inside Checkpoint Studio."
    assert details == "ZeroDivisionError: division by zero"
    assert "Traceback" not in message + details
    qtbot.waitUntil(lambda: not job.is_running())


def test_cancel_sets_the_core_token(qtbot: QtBot) -> None:
    job = Job(forever)
    failed: list[str] = []
    job.failed.connect(failed.append)
    with qtbot.waitSignal(job.progress):
        job.start()
    with qtbot.waitSignals([job.cancelled, job.finished], timeout=5_000):
        job.cancel()
    assert job.token.cancelled() and not failed and not job.is_running()

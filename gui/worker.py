"""ONE generic worker: runs a core callable on the QThreadPool (superqt), bridges the core
Progress/cancel contract to Qt signals, and delivers a result, a plain error, or "cancelled".

    job = Job(tensor_stats, checkpoint, name, parent=view)
    job.succeeded.connect(view.show_stats)
    job.failed.connect(view.show_error)      # (message, details)
    job.start()
    ...
    job.cancel()                             # sets the core CancelToken -> core raises Cancelled
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import FunctionWorker, create_worker
from superqt.utils._qthreading import WorkerBaseSignals

from core.errors import Cancelled, CheckpointError
from core.progress import CancelToken

PROGRESS_INTERVAL_S = 0.05  # at most ~20 progress signals per second reach the GUI thread


class _Signals(WorkerBaseSignals):
    progress = Signal(object, object, str)  # object: byte counts overflow a C int


class _Worker(FunctionWorker):
    """A superqt FunctionWorker whose signals object also carries `progress`."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(func, *args, **kwargs)
        self.signals = _Signals()


class _Bridge:
    """The core `Progress` the callable sees: forwards updates (throttled), reports cancel."""

    def __init__(self, emit: Callable[[int, int, str], None], token: CancelToken) -> None:
        self._emit, self._token, self._last = emit, token, 0.0

    def update(self, done: int, total: int, text: str = "") -> None:
        now = time.perf_counter()
        if now - self._last >= PROGRESS_INTERVAL_S or done >= total:
            self._last = now
            self._emit(done, total, text)

    def cancelled(self) -> bool:
        return self._token.cancelled()


class Job(QObject):
    """One run of a core function. Exactly one of succeeded/failed/cancelled, then finished."""

    progress = Signal(object, object, str)  # done, total (Python ints of any size), text
    succeeded = Signal(object)
    failed = Signal(str, str)  # plain message, technical details ("" when none)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, parent: QObject | None = None,
                 **kwargs: Any) -> None:
        super().__init__(parent)
        self.token = CancelToken()
        self._running = False
        self._outcome = False
        self._worker = create_worker(func, *args, _worker_class=_Worker, _start_thread=False,
                                     _ignore_errors=True, **kwargs)
        if _accepts_progress(func) and "progress" not in kwargs:
            self._worker._kwargs["progress"] = _Bridge(self._worker.signals.progress.emit, self.token)
        self._worker.signals.progress.connect(self.progress)
        self._worker.returned.connect(self._on_returned)
        self._worker.errored.connect(self._on_errored)
        self._worker.finished.connect(self._on_finished)

    def start(self) -> None:
        self._running = True
        self._worker.start()

    def cancel(self) -> None:
        """Ask the core function to stop; `cancelled` follows once it has."""
        self.token.cancel()
        self._worker.quit()

    def is_running(self) -> bool:
        return self._running

    def _on_returned(self, result: object) -> None:
        if self.token.cancelled():
            return  # the function finished anyway; the user asked to stop, so drop the result
        self._outcome = True
        self.succeeded.emit(result)

    def _on_errored(self, exc: BaseException) -> None:
        self._outcome = True
        if isinstance(exc, Cancelled) or self.token.cancelled():
            self.cancelled.emit()
        elif isinstance(exc, CheckpointError):
            self.failed.emit(exc.message, exc.details or "")
        else:
            self.failed.emit("Something went wrong inside Checkpoint Studio.",
                             f"{type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._running = False
        if not self._outcome:  # cancelled before returning (superqt drops the result)
            self._outcome = True
            self.cancelled.emit()
        self.finished.emit()


def _accepts_progress(func: Callable[..., Any]) -> bool:
    try:
        return "progress" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False

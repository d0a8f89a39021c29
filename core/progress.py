"""Progress/cancel contract shared by every long job (CLI bar, GUI worker bridge, test recorder)."""

from __future__ import annotations

import threading
from typing import Protocol

from core.errors import Cancelled


class Progress(Protocol):
    def update(self, done: int, total: int, text: str = "") -> None: ...

    def cancelled(self) -> bool: ...


class CancelToken:
    """A Progress that only carries a cancel flag; thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def cancelled(self) -> bool:
        return self._event.is_set()

    def update(self, done: int, total: int, text: str = "") -> None:
        pass


class Recorder(CancelToken):
    """Records every update; used by tests and by callers that only want the last state."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.updates: list[tuple[int, int, str]] = []
        self._cancel_after = cancel_after

    def update(self, done: int, total: int, text: str = "") -> None:
        self.updates.append((done, total, text))
        if self._cancel_after is not None and len(self.updates) >= self._cancel_after:
            self.cancel()


def step(progress: Progress | None, done: int, total: int, text: str = "") -> None:
    """Report progress and raise `Cancelled` if the user asked to stop."""
    if progress is None:
        return
    progress.update(done, total, text)
    if progress.cancelled():
        raise Cancelled()

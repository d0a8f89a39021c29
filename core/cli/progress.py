"""The CLI's implementation of the progress contract: a rich bar on an interactive stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    """Used as `with ProgressBar("converting", enabled) as progress:`; yields None when disabled.

    Redraws at most every 0.1 s. Ctrl-C raises KeyboardInterrupt, which every job cleans up on, so
    `cancelled()` never needs to be true here.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.last_draw = 0

    def __enter__(self) -> ProgressBar | None:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, done: int, total: int, text: str = "") -> None:
        now = time.monotonic_ns()
        if now - self.last_draw > 100_000_000 or done >= total:
            self.last_draw = now
            self.bar.update(self.task, completed=done, total=total,
                            description=(text or self.label)[:40])

    def cancelled(self) -> bool:
        return False

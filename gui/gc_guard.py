"""Garbage collection on the GUI thread only.

Python's cyclic collector runs on whichever thread happens to allocate. When that is a worker, the
collection can free Qt objects held in reference cycles there, and a QObject destroyed off the GUI
thread crashes the process. So the GUI process turns automatic collection off and collects from a
timer on the GUI thread, generation by generation with the usual thresholds.

This is the idea of pyqtgraph's `GarbageCollector`; it is written out here because importing
pyqtgraph at start-up costs 0.3-0.6 s, and the app loads pyqtgraph only with the first plot.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 100


class GuiThreadCollector(QObject):
    def __init__(self, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__()
        self.thresholds = gc.get_threshold()
        self.long_lived = len(gc.get_objects(2))
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.start(interval_ms)

    def start(self, interval_ms: int = INTERVAL_MS) -> None:
        gc.disable()
        self.timer.start(interval_ms)

    def stop(self) -> None:
        """Back to automatic collection (for a test run that leaves the GUI tests)."""
        self.timer.stop()
        gc.enable()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds, as automatic collection
        would have; also turn automatic collection off again if a library switched it back on."""
        if gc.isenabled():
            gc.disable()
        counts = gc.get_count()
        if counts[0] <= self.thresholds[0]:
            return
        if counts[1] <= self.thresholds[1]:
            gc.collect(0)
        elif counts[2] <= self.thresholds[2] or not self._old_generation_grew():
            gc.collect(1)
        else:
            gc.collect(2)
            self.long_lived = len(gc.get_objects(2))

    def _old_generation_grew(self) -> bool:
        """CPython's rule for a full collection: only when the objects that reached the oldest
        generation since the last full one are over a quarter of those that lived through it.
        A full collection walks every object (torch alone brings ~150k, 0.1-0.4 s), so doing one
        each time the count threshold passes would freeze the window during long jobs."""
        return len(gc.get_objects(2)) - self.long_lived > self.long_lived // 4


_collector: GuiThreadCollector | None = None


def collect_on_gui_thread() -> GuiThreadCollector:
    """Start collecting on the GUI thread (idempotent). Call it on the GUI thread once the
    QApplication exists: the timer lives there."""
    global _collector
    if _collector is None:
        _collector = GuiThreadCollector()
    elif not _collector.timer.isActive():
        _collector.start()
    return _collector


def stop_collecting_on_gui_thread() -> None:
    if _collector is not None:
        _collector.stop()

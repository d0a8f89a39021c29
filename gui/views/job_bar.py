"""A strip that runs one `Job` at a time: what it does, a progress bar and Cancel.

Shared by the convert panel and the diff view; hidden while nothing runs.
"""

from __future__ import annotations

import contextlib

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

from gui.worker import Job


class JobBar(QWidget):
    idle = Signal()  # the job has finished (after its succeeded/failed/cancelled)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job: Job | None = None
        self.label = QLabel()
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.bar = QProgressBar(textVisible=False)
        self.bar.setFixedWidth(260)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignRight)
        self.setVisible(False)

    def start(self, job: Job, text: str) -> Job:
        """Show `text` with a busy bar and start `job`; the bar fills as the job reports progress."""
        self.job = job
        self._text = text
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.cancel_button.setEnabled(True)
        job.progress.connect(self._on_progress)
        job.finished.connect(lambda: self._on_finished(job))
        self.setVisible(True)
        job.start()
        return job

    def is_busy(self) -> bool:
        return self.job is not None

    def cancel(self) -> None:
        if self.job is not None:
            self.cancel_button.setEnabled(False)
            self.label.setText("Cancelling…")
            self.job.cancel()

    def shutdown(self) -> None:
        """Cancel the job and drop its results (the view is going away)."""
        job, self.job = self.job, None
        if job is None:
            return
        for signal in (job.progress, job.succeeded, job.failed, job.cancelled, job.finished):
            with contextlib.suppress(RuntimeError, TypeError):  # nothing connected
                signal.disconnect()
        job.cancel()
        self.setVisible(False)

    def _on_progress(self, done: int, total: int, text: str) -> None:
        if self.job is None or self.job.token.cancelled():
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * done / total) if total else 0)
        self.label.setText(f"{self._text} · {text}" if text else self._text)

    def _on_finished(self, job: Job) -> None:
        job.deleteLater()
        if self.job is job:  # a handler of its result may already have started the next job
            self.job = None
            self.setVisible(False)
            self.idle.emit()

"""Pieces the export and checks panels share: a path field with Browse, starting a gui.worker.Job
in a JobBar, an error banner, the trust prompt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QWidget,
)

from gui.views.job_bar import JobBar
from gui.widgets import Banner
from gui.worker import Job

ERROR_STYLE = ("#Banner { background: rgba(218, 54, 51, 40); border: 1px solid rgba(218, 54, 51, 150);"
               " border-radius: 4px; }")


class PathField(QWidget):
    """A line edit with a Browse button; `mode` is "file", "dir" or "save"."""

    changed = Signal(str)

    def __init__(self, mode: str = "file", placeholder: str = "", file_filter: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode, self.file_filter = mode, file_filter
        self.edit = QLineEdit(placeholderText=placeholder, clearButtonEnabled=True)
        self.edit.textChanged.connect(self.changed)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self.choose)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)

    def choose(self) -> None:
        settings = QSettings()
        start = self.text() or str(settings.value("last_dir", ""))
        if self.mode == "dir":
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self.mode == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Save as", start, self.file_filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start, self.file_filter)
        if path:
            settings.setValue("last_dir", str(Path(path).parent if self.mode != "dir" else path))
            self.set_text(path)


class ErrorBanner(Banner):
    """The plain sentence of a failed job with a Details expander (never a traceback)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet(ERROR_STYLE)

    def clear(self) -> None:
        self.setVisible(False)

    def message(self) -> str:
        return self.title.text() if self.isVisible() else ""


def hbox(*widgets: QWidget, stretch_at: int = -1, grow: QWidget | None = None) -> QHBoxLayout:
    """A row without margins; a stretch before `widgets[stretch_at]` (at the end when it equals
    len(widgets)); `grow` takes the spare width."""
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        if i == stretch_at:
            row.addStretch(1)
        row.addWidget(widget, 1 if widget is grow else 0)
    if stretch_at >= len(widgets):
        row.addStretch(1)
    return row


def run_job(bar: JobBar, owner: QWidget, func: Callable[..., Any], *args: Any, text: str,
            done: Callable[[Any], None], failed: Callable[[str, str], None],
            cancelled: Callable[[], None], **kwargs: Any) -> Job:
    """Start `func(*args, **kwargs)` on the worker, shown in `bar`; exactly one callback follows."""
    job = Job(func, *args, parent=owner, **kwargs)
    job.succeeded.connect(done)
    job.failed.connect(failed)
    job.cancelled.connect(cancelled)
    return bar.start(job, text)


def ask_trust(parent: QWidget, paths: list[str]) -> bool:
    """Ask before loading files that are code (TorchScript, .pt2, pickled modules)."""
    names = "\n".join(f"  • {Path(p).name}" for p in paths)
    box = QMessageBox(QMessageBox.Icon.Warning, "Run code from these files?",
                      "Running these models runs code stored in the files:\n" + names
                      + "\n\nOnly continue if you trust where they came from.",
                      QMessageBox.StandardButton.Cancel, parent)
    run = box.addButton("Trust and run", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is run


class JobPanelState:
    """The run state a job panel shows (export, checks): `state`, a status line, an error banner.

    Mixed into a QWidget that has `status` (QLabel), `banner` (ErrorBanner), a `finished(str)`
    signal and `_update_buttons()`.
    """

    state: str

    def _begin(self) -> None:
        self.state = "running"
        self.status.clear()
        self.banner.clear()
        self._update_buttons()

    def _end(self, state: str, status: str) -> None:
        self.state = state
        self.status.setText(status)
        self._update_buttons()
        self.finished.emit(state)

    def _fail(self, message: str, details: str) -> None:
        self.banner.show_message(message, details)
        self._end("error", "")

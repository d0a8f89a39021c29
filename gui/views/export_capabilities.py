"""Help ▸ Capabilities and the export panel's "What works here…": the `ckpt-studio doctor` report
(core.capabilities) in a window, gathered on the worker."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.worker import Job

INTRO = ("What this installation can do: library versions, ONNX Runtime providers, the C++ compiler, "
         "and which export targets and runners work here (and how to get those that do not). The same "
         "report as `ckpt-studio doctor`.")


def doctor_text() -> str:
    from core.capabilities import capabilities, render

    return render(capabilities())


class CapabilitiesDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Capabilities")
        self.resize(720, 520)
        self.report = QPlainTextEdit(readOnly=True, placeholderText="Checking this installation…")
        self.report.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.copy = QPushButton("Copy", enabled=False)
        self.copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.report.toPlainText()))
        buttons.addButton(self.copy, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(INTRO, wordWrap=True))
        layout.addWidget(self.report, 1)
        layout.addWidget(buttons)
        self.job: Job | None = None

    def refresh(self) -> None:
        """Gather the report again, on the worker."""
        if self.job is not None:
            return
        self.report.clear()
        self.copy.setEnabled(False)
        job = self.job = Job(doctor_text, parent=self)
        job.succeeded.connect(self._show)
        job.failed.connect(lambda message, _details: self._show(message))
        job.finished.connect(job.deleteLater)
        job.start()

    def is_busy(self) -> bool:
        return self.job is not None

    def _show(self, text: str) -> None:
        self.job = None
        self.report.setPlainText(text)
        self.copy.setEnabled(True)


def show_capabilities(parent: Any) -> CapabilitiesDialog:
    """The window's one capabilities dialog, shown and refreshed."""
    dialog = getattr(parent, "_capabilities_dialog", None)
    if not isinstance(dialog, CapabilitiesDialog):
        dialog = CapabilitiesDialog(parent)
        parent._capabilities_dialog = dialog
    dialog.refresh()
    dialog.show()
    dialog.raise_()
    return dialog

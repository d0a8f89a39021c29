"""Inspect view for one file: opens it on a worker, then shows sections, tensors (table + module
tree), the selected tensor's statistics, totals and the scan findings. Errors stay in the view as a
plain sentence with Details; nothing here reads the file on the GUI thread."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.formats import open_checkpoint
from core.inspect import InspectResult, Totals, inspect_checkpoint
from core.model import Checkpoint, Finding, TensorInfo
from core.report import human_bytes, human_count
from gui.views.config_box import ConfigBox
from gui.views.sections import SectionsPanel
from gui.views.tensor_detail import TensorDetailView
from gui.views.tensors import TensorsPanel
from gui.widgets import Banner, MessagePage
from gui.worker import Job

CODE_BANNER = "This file contains code references; it was opened safely without running them."
DATA_BANNER = ("This file holds Python data besides tensors; the types it names run no code, and "
               "nothing in it was run.")
UNRATED_BANNER = "Parts of this file could not be checked; nothing in it was run."
INFO_BANNER = "Notes about this file"


def open_and_inspect(path: str) -> tuple[Checkpoint, InspectResult]:
    """The worker's job: open (headers/pickles only) and summarise."""
    checkpoint = open_checkpoint(path)
    return checkpoint, inspect_checkpoint(checkpoint)


class InspectView(QWidget):
    loaded = Signal()
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, path: str | Path, opener: Callable[..., tuple[Checkpoint, InspectResult]]
                 = open_and_inspect, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = str(path)
        self.state = "new"  # new | loading | ready | error | cancelled
        self.result: InspectResult | None = None
        self.checkpoint: Checkpoint | None = None
        self._opener = opener
        self._job: Job | None = None
        self._build()
        self.reload()

    def _build(self) -> None:
        self.loading = _loading_page(self)
        self.message = MessagePage()
        self.message.action.connect(self.reload)
        self.content = self._content_page()
        self.pages = QStackedWidget()
        for page in (self.loading, self.message, self.content):
            self.pages.addWidget(page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pages)

    def _content_page(self) -> QWidget:
        self.banner = Banner()
        self.preprocess = QLabel(wordWrap=True, visible=False,
                                 textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sections = SectionsPanel()
        self.tensors = TensorsPanel()
        self.detail = TensorDetailView()
        self.sections.section_changed.connect(self._show_section)
        self.tensors.tensor_selected.connect(self._show_tensor)
        self.config = ConfigBox()  # a model folder's config.json, under the sections
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.sections, 1)
        column.addWidget(self.config)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        for widget in (left, self.tensors, self.detail):
            self.splitter.addWidget(widget)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([230, 700, 330])
        self.totals = QLabel(textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_info = QLabel()
        bar = QHBoxLayout()
        bar.addWidget(self.totals, 1)
        bar.addWidget(self.file_info)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.banner)
        layout.addWidget(self.preprocess)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(bar)
        return page

    # -- opening -------------------------------------------------------------------------------
    def reload(self) -> None:
        self.shutdown()
        self.state = "loading"
        self.loading_label.setText(f"Opening {Path(self.path).name}…")
        self.loading_bar.setRange(0, 0)
        self.pages.setCurrentWidget(self.loading)
        job = Job(self._opener, self.path, parent=self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_opened)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(job.deleteLater)
        self._job = job
        job.start()

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def shutdown(self) -> None:
        """Stop every job of this view (before closing it)."""
        self.detail.cancel()
        if self._job is not None:
            job, self._job = self._job, None
            for signal in (job.progress, job.succeeded, job.failed, job.cancelled):
                signal.disconnect()
            job.cancel()

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.loading_bar.setRange(0, 1000)
        self.loading_bar.setValue(int(1000 * done / total) if total else 0)
        if text:
            self.loading_label.setText(f"{text}…")

    def is_busy(self) -> bool:
        return self._job is not None or self.detail.is_busy()

    def _on_opened(self, opened: tuple[Checkpoint, InspectResult]) -> None:
        self._job = None
        self.checkpoint, self.result = opened
        self.detail.set_checkpoint(self.checkpoint)
        self.config.set_metadata(self.checkpoint.metadata)
        self._show_findings(self.result.findings)
        self._show_preprocess(self.result.preprocess)
        self.file_info.setText(f"{self.result.format} · {human_bytes(self.result.file_size)} on disk")
        self.file_info.setToolTip(self.path)
        self.sections.set_result(self.result)
        self.state = "ready"
        self.pages.setCurrentWidget(self.content)
        self.loaded.emit()

    def _on_failed(self, message: str, details: str) -> None:
        self._job = None
        self.state = "error"
        self.message.show_message(message, details, "Try again")
        self.pages.setCurrentWidget(self.message)
        self._error_box(message, details)
        self.failed.emit(message)

    def _error_box(self, message: str, details: str) -> None:
        """The plain sentence in a (non-blocking) message box too, with the details folded away."""
        box = QMessageBox(QMessageBox.Icon.Warning, f"Could not open {Path(self.path).name}",
                          message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _on_cancelled(self) -> None:
        self._job = None
        self.state = "cancelled"
        self.message.show_message(f"Opening {Path(self.path).name} was cancelled.", "", "Open again",
                                  error=False)
        self.pages.setCurrentWidget(self.message)
        self.cancelled.emit()

    # -- showing -------------------------------------------------------------------------------
    def _show_findings(self, findings: list[Finding]) -> None:
        if not findings:
            self.banner.setVisible(False)
            return
        self.banner.show_message(*findings_banner(self.path, findings))

    def _show_preprocess(self, record: dict[str, Any] | None) -> None:
        """The preprocessing spec an exported file records (as `ckpt-studio inspect` prints it)."""
        from core.cli.inspect import preprocess_line

        self.preprocess.setText(preprocess_line(record) if record else "")
        self.preprocess.setVisible(bool(record))

    def _show_section(self, name: str) -> None:
        assert self.result is not None
        view = next(v for v in self.result.sections if v.name == name)
        self.tensors.set_tensors(view.tensors, name, self.result.aliases)
        self.totals.setText(totals_text(view.totals, name))

    def _show_tensor(self, info: TensorInfo | None) -> None:
        self.detail.show_tensor(info, self.sections.current())

    def focus_filter(self) -> None:
        if self.state == "ready":
            self.tensors.focus_filter()


def findings_banner(path: str, findings: list[Finding]) -> tuple[str, str]:
    """The banner's title and details, worded by core.scan's rating of what the file names: code
    (dangerous), only data types that run no code, or things that could not be rated."""
    from core.scan import ScanResult

    scan = ScanResult(path, "", findings)
    rated = [f for f in findings if f.severity != "info"]
    if scan.dangerous:
        title = CODE_BANNER
    elif rated and all(f.kind == "global" for f in rated):  # severity "unknown": inert or allowed
        title = DATA_BANNER
    else:
        title = UNRATED_BANNER if rated else INFO_BANNER
    lines = [f"[{f.severity}] {f.message}" + (f"  ({f.where})" if f.where else "")
             for f in findings]
    if scan.refused_by_weights_only:
        lines.append("torch.load(weights_only=True) would refuse this file.")
    allow = scan.allow_line()
    if allow:
        lines += ["If you trust where this file came from, these lines let torch load it:", allow]
    return title, "\n".join(lines)


def totals_text(totals: Totals, section: str) -> str:
    dtypes = ", ".join(f"{d} {human_bytes(n)}" for d, n in totals.bytes_by_dtype.items())
    text = (f"<b>{html.escape(section)}</b>: {totals.tensors:,} tensors · "
            f"{human_count(totals.parameters)} parameters · {human_bytes(totals.nbytes)}")
    if totals.buffers:
        text += f" · {human_count(totals.buffers)} buffer values"
    return text + (f" &nbsp;({dtypes})" if dtypes else "")


def _loading_page(view: InspectView) -> QWidget:
    page = QWidget()
    view.loading_label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
    bar = view.loading_bar = QProgressBar(textVisible=False, maximumWidth=320)
    cancel = QPushButton("Cancel")
    cancel.clicked.connect(view.cancel)
    layout = QVBoxLayout(page)
    layout.addStretch(1)
    layout.addWidget(view.loading_label)
    layout.addWidget(bar, 0, Qt.AlignmentFlag.AlignCenter)
    layout.addWidget(cancel, 0, Qt.AlignmentFlag.AlignCenter)
    layout.addStretch(1)
    return page

"""Convert panel: the options of `ckpt-studio convert` as widgets (the form and the Request it
gives are in gui/views/convert_options.py); runs core `convert` on the worker, one file after
another, and shows each ConvertResult (outputs, verification, what changed).

Files dropped on the panel are queued and converted with the options shown at the time of the drop;
the queue (gui/views/convert_queue.py) shows each file's status and cancels one file alone.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from core.convert import ConvertOptions, ConvertResult
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.model import Checkpoint
from core.report import human_bytes
from gui.views import convert_queue as q
from gui.views.convert_options import ConvertOptionsForm, Request, convert_request
from gui.views.convert_precision import PrecisionBox
from gui.views.convert_queue import ConvertQueue
from gui.views.job_bar import JobBar
from gui.widgets import Banner
from gui.worker import Job

OK, FAIL, GREY = "#2e9e43", "#d0453a", "#888888"


class ConvertPanel(QWidget):
    converted = Signal(object)  # ConvertResult
    failed = Signal(str, str, str)  # source name, message, details
    batch_finished = Signal()  # the queue is empty again (after success, errors or a cancel)

    def __init__(self, parent: QWidget | None = None,
                 converter: Callable[..., ConvertResult] = convert_request) -> None:
        super().__init__(parent)
        self.sources: list[str] = []
        self.checkpoint: Checkpoint | None = None  # sources[0], opened (for its sections)
        self.results: list[ConvertResult] = []
        self.errors: list[tuple[str, str, str]] = []
        self._converter = converter
        self._queue: list[tuple[int, Request]] = []  # (queue row, request), waiting their turn
        self._converting = False
        self._count = (0, 0)  # (started, asked for) in this batch
        # What the running job is for. Job signals go to bound methods, never to lambdas holding
        # the panel: a lambda would hold the panel until the finished job is deleted, and a panel
        # nobody else holds would then be deleted inside its own child's destructor (a crash).
        self._running: Request | None = None
        self._running_row = -1
        self._cancel_one = False  # the running file alone is being cancelled, not the batch
        self._opening: str | None = None
        self._build()
        self.setAcceptDrops(True)
        for child in self.findChildren(QWidget):
            child.setAcceptDrops(False)  # dropped files go to the panel, not into a text field
        self._update_buttons()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._options_form())
        splitter.addWidget(self._results_box())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([520, 700])
        self.jobs = JobBar()
        self.jobs.idle.connect(self._on_idle)
        layout = QVBoxLayout(self)
        layout.addWidget(self._source_box())
        layout.addWidget(splitter, 1)
        layout.addWidget(self.jobs)

    def _source_box(self) -> QGroupBox:
        box = QGroupBox("Source")
        self.source_label = QLabel("No file chosen. Drop checkpoints here to convert them with "
                                   "the options below, or choose files.", wordWrap=True)
        choose = QPushButton("Choose files…")
        choose.clicked.connect(self.choose_files)
        row = QHBoxLayout(box)
        row.addWidget(self.source_label, 1)
        row.addWidget(choose)
        return box

    def _options_form(self) -> ConvertOptionsForm:
        f = self.form = ConvertOptionsForm()
        f.target.currentIndexChanged.connect(self._update_buttons)
        f.convert_button.clicked.connect(self.start)
        # the form's widgets, reachable on the panel as before (tests and screenshots set them)
        self.target, self.shard_size, self.dtype, self.section = f.target, f.shard_size, f.dtype, f.section
        self.strip_training, self.strip_prefix, self.add_prefix = (f.strip_training, f.strip_prefix,
                                                                   f.add_prefix)
        self.renames, self.keep, self.drop, self.out_dir = f.renames, f.keep, f.drop, f.out_dir
        self.overwrite, self.convert_button, self.sha256 = f.overwrite, f.convert_button, f.sha256
        return f

    def _results_box(self) -> QGroupBox:
        box = QGroupBox("Results")
        self.error = Banner()
        self.log = QTextBrowser(openExternalLinks=False)
        self.log.setPlaceholderText("Converted files, their verification and what changed appear "
                                    "here.")
        self.queue = ConvertQueue()
        self.queue.cancel_requested.connect(self.cancel_file)
        self.precision = PrecisionBox()  # what a 16-bit cast does, shown before Convert is clicked
        self.precision.changed.connect(self._update_buttons)
        self.form.options_changed.connect(self._check_precision)
        layout = QVBoxLayout(box)
        layout.addWidget(self.error)
        layout.addWidget(self.precision, 2)
        layout.addWidget(self.queue, 1)
        layout.addWidget(self.log, 2)
        return box

    # -- options (gui/views/convert_options.py) ------------------------------------------------
    def add_rename(self, pattern: str = "", replacement: str = "") -> None:
        self.form.add_rename(pattern, replacement)

    def options(self) -> ConvertOptions:
        return self.form.options()

    def request(self, source: str | Checkpoint) -> Request:
        return replace(self.form.request(source), allow_overflow=self.precision.allow.isChecked())

    def _check_precision(self) -> None:
        """Show what a 16-bit cast does to the first source's values (on the worker)."""
        self.precision.refresh(self.checkpoint, self.dtype.currentData(), self.options())

    # -- sources -------------------------------------------------------------------------------
    def set_sources(self, paths: list[str], checkpoint: Checkpoint | None = None) -> None:
        """The files the Convert button converts; the sections come from the first one."""
        self.sources = [str(p) for p in paths]
        self.checkpoint = checkpoint
        self.source_label.setText(files_html(self.sources) if paths else "No file chosen.")
        self.source_label.setToolTip("\n".join(self.sources))
        self.form.fill_sections(checkpoint)
        if paths and checkpoint is None and not self.jobs.is_busy():
            self._opening = path = self.sources[0]
            job = Job(open_checkpoint, path, parent=self)
            job.succeeded.connect(self._on_source_opened)
            job.failed.connect(self._show_error)
            self.jobs.start(job, f"Reading the sections of {Path(self.sources[0]).name}")
        self._update_buttons()

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Files to convert")
        if paths:
            self.set_sources(paths)

    def _on_source_opened(self, checkpoint: Checkpoint) -> None:
        if self.sources[:1] == [self._opening]:  # still the chosen file
            self.checkpoint = checkpoint
            self.form.fill_sections(checkpoint)
            self._check_precision()

    # -- converting ----------------------------------------------------------------------------
    def start(self) -> None:
        """Convert the chosen file(s) with the options shown, once the precision check shown is
        the one for these options (else it runs first, for the user to see before converting)."""
        if not self.precision.is_current(self.checkpoint, self.dtype.currentData(), self.options()):
            self._check_precision()
            return
        if self.sources and not self.precision.blocker():
            first: list[str | Checkpoint] = [self.checkpoint] if self.checkpoint else [self.sources[0]]
            self.convert_files(first + self.sources[1:])

    def convert_files(self, sources: list[str | Checkpoint]) -> None:
        """Queue `sources` with the current options; they convert one after another."""
        try:
            requests = [self.request(s) for s in sources]
        except CheckpointError as exc:
            self._show_error(exc.message, exc.details or "")
            return
        self.error.setVisible(False)
        if not self.sources:  # dropped files: the source box names them, not "No file chosen"
            paths = [_source_path(r) for r in requests]
            self.source_label.setText(files_html(paths, "queued below, converted with the options "
                                                 "shown when they were dropped"))
            self.source_label.setToolTip("\n".join(paths))
        if not self._converting:
            self._count = (0, 0)
        self._converting = True
        self._queue += [(self.queue.add(r.name, _source_path(r)), r) for r in requests]
        self._count = (self._count[0], self._count[1] + len(requests))
        if not self.jobs.is_busy():  # else the running job's end starts the queue (_on_idle)
            self._next()

    def _next(self) -> None:
        self._running_row, request = self._queue.pop(0)
        started, asked = self._count
        self._count = (started + 1, asked)
        self._running = request
        self._cancel_one = False
        self.queue.set_state(self._running_row, q.RUNNING, "Converting…")
        job = Job(self._converter, request, parent=self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_converted)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        of = f" ({started + 1} of {asked})" if asked > 1 else ""
        self.jobs.start(job, f"Converting {request.name}{of}")
        self._update_buttons()

    def _on_idle(self) -> None:
        if self._queue and self._converting:
            self._next()
            return
        if self._converting:
            self._converting = False
            self.batch_finished.emit()
        self._update_buttons()

    def _on_progress(self, done: int, total: int, _text: str) -> None:
        if total and self.queue.states[self._running_row] == q.RUNNING:
            self.queue.set_state(self._running_row, q.RUNNING, f"Converting… {100 * done // total}%")

    def _on_converted(self, result: ConvertResult) -> None:
        outputs = ", ".join(Path(o["path"]).name for o in result.outputs[-1:])
        self.queue.set_state(self._running_row, q.WRITTEN, f"Written: {outputs}",
                             "\n".join(o["path"] for o in result.outputs))
        self.results.append(result)
        self.log.append(result_html(result))
        self.converted.emit(result)

    def _on_failed(self, message: str, details: str) -> None:
        name = self._running.name if self._running else ""
        self.errors.append((name, message, details))
        self.queue.set_state(self._running_row, q.FAILED, message, details)
        self.log.append(f"<p><b style='color:{FAIL}'>✖ {html.escape(name)}</b>: "
                        f"{html.escape(message)}</p>")
        self._show_error(message, details)
        self.failed.emit(name, message, details)

    def _on_cancelled(self) -> None:
        self.queue.set_state(self._running_row, q.CANCELLED, "Cancelled: nothing written")
        if self._cancel_one:
            self.log.append(f"<p><b>Cancelled</b>: nothing was written for "
                            f"{html.escape(self._running.name if self._running else '')}.</p>")
            return
        skipped = len(self._queue)
        self._drop_waiting()
        more = f" ({skipped} more file(s) not started)" if skipped else ""
        name = self._running.name if self._running else ""
        self.log.append(f"<p><b>Cancelled</b>: nothing was written for "
                        f"{html.escape(name)}{more}.</p>")

    def _show_error(self, message: str, details: str) -> None:
        self.error.show_message(message, details)

    def cancel(self) -> None:
        """Cancel the running file and every file waiting."""
        self._drop_waiting()
        self.jobs.cancel()

    def cancel_file(self, row: int) -> None:
        """Cancel one file: the running one (the queue then goes on) or one still waiting."""
        if row == self._running_row and self.jobs.is_busy():
            self._cancel_one = True
            self.jobs.cancel()
            return
        for i, (queued_row, _request) in enumerate(self._queue):
            if queued_row == row:
                del self._queue[i]
                self.queue.set_state(row, q.CANCELLED, "Cancelled before it started")
                self._count = (self._count[0], self._count[1] - 1)
                return

    def _drop_waiting(self) -> None:
        for row, _request in self._queue:
            self.queue.set_state(row, q.CANCELLED, "Not started (the batch was cancelled)")
        self._queue.clear()

    def shutdown(self) -> None:
        self._queue.clear()
        self.jobs.shutdown()
        self.precision.shutdown()

    def is_busy(self) -> bool:
        return self.jobs.is_busy()

    def _update_buttons(self) -> None:
        blocker = self.precision.blocker()
        self.form.update_enabled(bool(self.sources) and not self.jobs.is_busy() and not blocker)
        self.convert_button.setToolTip(blocker)

    # -- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent | QDragMoveEvent) -> None:
        if _local_paths(event):
            event.acceptProposedAction()

    dragMoveEvent = dragEnterEvent  # type: ignore[assignment]

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.convert_files(list(paths))


def files_html(paths: list[str], note: str = "") -> str:
    """'<b>a.pt, b.pt</b> and 2 more  in /folder' (+ `note`), for the source box."""
    names = ", ".join(Path(p).name for p in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    where = f"in {Path(paths[0]).parent}" + (f" · {note}" if note else "")
    return (f"<b>{html.escape(names)}</b>{more}&nbsp;&nbsp;<span style='color:{GREY}'>"
            f"{html.escape(where)}</span>")


def result_html(r: ConvertResult) -> str:
    """One conversion in a few lines: where it went, the verification, what changed."""
    size = sum(o["size"] for o in r.outputs)
    out = Path(r.outputs[-1]["path"])
    where = out.name if len(r.outputs) == 1 else f"{out.parent.name}/ ({len(r.outputs) - 1} shards + index)"
    v = r.verification
    passed = f"<span style='color:{OK}'>passed</span>" if v.get("passed") else \
        f"<span style='color:{FAIL}'>FAILED</span>"
    lines = [f"<b style='color:{OK}'>✔</b> <b>{html.escape(Path(r.source).name)} → "
             f"{html.escape(where)}</b>",
             f"{human_bytes(size)} · {r.tensors_written:,} tensors · {r.seconds:.2f} s",
             f"Verified: re-read {v.get('tensors', r.tensors_written):,} tensors and compared "
             f"their {html.escape(str(v.get('method', '')))} checksums: {passed}",
             f"Source {html.escape(r.source_hash['algorithm'])}: "
             f"<span style='font-family:monospace'>{html.escape(r.source_hash['digest'])}</span>"]
    casts = {to for _old, to in r.dtype_changes.values()}
    changes = [f"{len(r.dtype_changes):,} cast to {', '.join(sorted(casts))}"] if casts else []
    changes += [f"{len(r.renamed):,} renamed"] if r.renamed else []
    changes += [f"{len(r.aliases):,} tied tensor(s) written once"] if r.aliases else []
    changes += [f"{n:,} tensors of section '{html.escape(s)}' left out"
                for s, n in r.dropped_sections.items()]
    changes += [f"{len(r.dropped):,} left out by keep/drop rules"] if r.dropped else []
    lines += ["Changes: " + ", ".join(changes)] if changes else []
    lines += [f"Note: {html.escape(n)}" for n in r.notes]
    lines.append(f"<span style='color:{GREY}'>{html.escape(str(out))}</span>")
    return "<p>" + "<br>".join(lines) + "</p>"


def _source_path(request: Request) -> str:
    source = request.source
    return str(source.path if isinstance(source, Checkpoint) else source)


def _local_paths(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[str]:
    urls = event.mimeData().urls()
    return [u.toLocalFile() for u in urls if u.isLocalFile() and u.toLocalFile()]

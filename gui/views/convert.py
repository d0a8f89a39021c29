"""Convert panel: the options of `ckpt-studio convert` as widgets; runs core `convert` on the worker,
one file after another, and shows each ConvertResult (outputs, verification, what changed).

Files dropped on the panel are converted with the options shown at the time of the drop.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.convert import ConvertOptions, ConvertResult, convert, default_destination
from core.convert.safetensors_sharded import parse_size
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.model import Checkpoint
from core.progress import Progress
from core.report import human_bytes
from gui.views.job_bar import JobBar
from gui.widgets import Banner
from gui.worker import Job

TARGETS = (("Safetensors (.safetensors)", "safetensors"),
           ("Sharded safetensors (folder + index)", "safetensors-sharded"),
           ("PyTorch (.pt, loads with weights_only=True)", "pt"))
DTYPES = (("Keep as they are", None), ("float16 (fp16)", "fp16"), ("bfloat16 (bf16)", "bf16"),
          ("float32 (fp32)", "fp32"))
WEIGHTS = "Detected weights"
OK, FAIL, GREY = "#2e9e43", "#d0453a", "#888888"


@dataclass
class Request:
    """One file to convert, with the options that were shown when it was asked for."""

    source: str | Checkpoint
    target: str
    options: ConvertOptions
    out_dir: str | None
    overwrite: bool
    max_shard_size: int | None

    @property
    def name(self) -> str:
        return Path(self.source.path if isinstance(self.source, Checkpoint) else self.source).name


def convert_request(request: Request, progress: Progress | None = None) -> ConvertResult:
    """The worker's job: convert one file to `<out_dir or its folder>/<its stem><suffix>`."""
    src = request.source
    destination = default_destination(src.path if isinstance(src, Checkpoint) else src,
                                      request.target, request.out_dir)
    return convert(src, destination, request.target, request.options,
                   overwrite=request.overwrite, max_shard_size=request.max_shard_size,
                   progress=progress)


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
        self._queue: list[Request] = []
        self._converting = False
        self._count = (0, 0)  # (started, asked for) in this batch
        self._build()
        self.setAcceptDrops(True)
        for child in self.findChildren(QWidget):
            child.setAcceptDrops(False)  # dropped files go to the panel, not into a text field
        self._update_buttons()

    # -- building ------------------------------------------------------------------------------
    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._options_box())
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

    def _options_box(self) -> QGroupBox:
        box = QGroupBox("Options")
        column = QVBoxLayout(box)
        form = QFormLayout()
        column.addLayout(form)
        column.addStretch(1)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.target = _combo(TARGETS)
        self.shard_size = QLineEdit(placeholderText="5GB", maximumWidth=90)
        self.shard_size.setToolTip("Data per shard, e.g. 2GB, 500MB or 1GiB")
        self.target.currentIndexChanged.connect(self._update_buttons)
        form.addRow("Format:", _row(self.target, QLabel("max shard"), self.shard_size))
        self.dtype = _combo(DTYPES)
        self.dtype.setToolTip("Cast floating-point tensors; integer and bool tensors keep their type")
        form.addRow("Data type:", self.dtype)
        self.section = QComboBox()
        self.section.addItem(WEIGHTS, None)
        form.addRow("Section:", self.section)
        self.strip_training = QCheckBox("Leave out optimizer, scheduler and other training state",
                                        checked=True)
        form.addRow("", self.strip_training)
        self.strip_prefix = QLineEdit(placeholderText="e.g. module., _orig_mod.")
        form.addRow("Strip prefixes:", self.strip_prefix)
        self.add_prefix = QLineEdit(placeholderText="e.g. model.")
        form.addRow("Add prefix:", self.add_prefix)
        form.addRow("Renames:", self._renames())
        self.keep = QLineEdit(placeholderText="globs, e.g. encoder.* (empty: keep all)")
        form.addRow("Keep only:", self.keep)
        self.drop = QLineEdit(placeholderText="globs, e.g. *.num_batches_tracked")
        form.addRow("Leave out:", self.drop)
        self.out_dir = QLineEdit(placeholderText="Beside each source file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.choose_folder)
        form.addRow("Output folder:", _row(self.out_dir, browse))
        self.overwrite = QCheckBox("Replace existing output files")
        form.addRow("", self.overwrite)
        self.convert_button = QPushButton("Convert", default=True)
        self.convert_button.clicked.connect(self.start)
        form.addRow("", _row(QWidget(), self.convert_button))
        return box

    def _renames(self) -> QWidget:
        self.renames = QTableWidget(0, 2)
        self.renames.setHorizontalHeaderLabels(["Pattern (regex)", "Replacement"])
        self.renames.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.renames.verticalHeader().setVisible(False)
        self.renames.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.renames.setFixedHeight(self.renames.fontMetrics().height() * 5 + 16)
        add, remove = QToolButton(text="+"), QToolButton(text="−")
        add.setToolTip("Add a rename: a regular expression and its replacement (\\1 for groups)")
        remove.setToolTip("Remove the selected rename")
        add.clicked.connect(lambda: self.add_rename())
        remove.clicked.connect(lambda: self.renames.removeRow(self.renames.currentRow()))
        buttons = QVBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        widget = QWidget()
        widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        row = QHBoxLayout(widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.renames, 1)
        row.addLayout(buttons)
        return widget

    def _results_box(self) -> QGroupBox:
        box = QGroupBox("Results")
        self.error = Banner()
        self.log = QTextBrowser(openExternalLinks=False)
        self.log.setPlaceholderText("Converted files, their verification and what changed appear "
                                    "here.")
        layout = QVBoxLayout(box)
        layout.addWidget(self.error)
        layout.addWidget(self.log, 1)
        return box

    # -- options -------------------------------------------------------------------------------
    def add_rename(self, pattern: str = "", replacement: str = "") -> None:
        row = self.renames.rowCount()
        self.renames.insertRow(row)
        self.renames.setItem(row, 0, QTableWidgetItem(pattern))
        self.renames.setItem(row, 1, QTableWidgetItem(replacement))

    def options(self) -> ConvertOptions:
        """The widgets' state as core ConvertOptions (as `ckpt-studio convert` flags give it)."""
        renames = []
        for row in range(self.renames.rowCount()):
            pattern, repl = (self.renames.item(row, c) for c in (0, 1))
            if pattern is not None and pattern.text():
                renames.append(f"{pattern.text()}=>{repl.text() if repl else ''}")
        return ConvertOptions(
            section=self.section.currentData(), keep_training=not self.strip_training.isChecked(),
            dtype=self.dtype.currentData(), strip_prefix=_words(self.strip_prefix.text()),
            add_prefix=self.add_prefix.text().strip(), rename=tuple(renames),
            keep=_words(self.keep.text()), drop=_words(self.drop.text()))

    def request(self, source: str | Checkpoint) -> Request:
        target = self.target.currentData()
        shard = self.shard_size.text().strip()
        size = parse_size(shard) if shard and target == "safetensors-sharded" else None
        return Request(source, target, self.options(), self.out_dir.text().strip() or None,
                       self.overwrite.isChecked(), size)

    # -- sources -------------------------------------------------------------------------------
    def set_sources(self, paths: list[str], checkpoint: Checkpoint | None = None) -> None:
        """The files the Convert button converts; the sections come from the first one."""
        self.sources = [str(p) for p in paths]
        self.checkpoint = checkpoint
        names = ", ".join(Path(p).name for p in self.sources[:3])
        more = f" and {len(self.sources) - 3} more" if len(self.sources) > 3 else ""
        folder = html.escape(str(Path(self.sources[0]).parent)) if paths else ""
        self.source_label.setText(f"<b>{html.escape(names)}</b>{more}&nbsp;&nbsp;<span style="
                                  f"'color:{GREY}'>in {folder}</span>" if paths else "No file chosen.")
        self.source_label.setToolTip("\n".join(self.sources))
        self._fill_sections(checkpoint)
        if paths and checkpoint is None and not self.jobs.is_busy():
            path = self.sources[0]
            job = Job(open_checkpoint, path, parent=self)
            job.succeeded.connect(lambda checkpoint: self._on_source_opened(path, checkpoint))
            job.failed.connect(self._show_error)
            self.jobs.start(job, f"Reading the sections of {Path(self.sources[0]).name}")
        self._update_buttons()

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Files to convert")
        if paths:
            self.set_sources(paths)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir.text())
        if folder:
            self.out_dir.setText(folder)

    def _on_source_opened(self, path: str, checkpoint: Checkpoint) -> None:
        if self.sources[:1] == [path]:  # still the chosen file
            self.checkpoint = checkpoint
            self._fill_sections(checkpoint)

    def _fill_sections(self, checkpoint: Checkpoint | None) -> None:
        self.section.clear()
        self.section.addItem(WEIGHTS + (f" ({checkpoint.weights})" if checkpoint and
                                        checkpoint.weights else ""), None)
        for name, section in (checkpoint.sections.items() if checkpoint else ()):
            if section.tensors:
                self.section.addItem(f"{name} ({len(section.tensors):,} tensors)", name)

    # -- converting ----------------------------------------------------------------------------
    def start(self) -> None:
        """Convert the chosen file(s) with the options shown."""
        if self.sources:
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
        if not self._converting:
            self._count = (0, 0)
        self._converting = True
        self._queue += requests
        self._count = (self._count[0], self._count[1] + len(requests))
        if not self.jobs.is_busy():  # else the running job's end starts the queue (_on_idle)
            self._next()

    def _next(self) -> None:
        request = self._queue.pop(0)
        started, asked = self._count
        self._count = (started + 1, asked)
        job = Job(self._converter, request, parent=self)
        job.succeeded.connect(self._on_converted)
        job.failed.connect(lambda message, details: self._on_failed(request, message, details))
        job.cancelled.connect(lambda: self._on_cancelled(request))
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

    def _on_converted(self, result: ConvertResult) -> None:
        self.results.append(result)
        self.log.append(result_html(result))
        self.converted.emit(result)

    def _on_failed(self, request: Request, message: str, details: str) -> None:
        self.errors.append((request.name, message, details))
        self.log.append(f"<p><b style='color:{FAIL}'>✖ {html.escape(request.name)}</b>: "
                        f"{html.escape(message)}</p>")
        self._show_error(message, details)
        self.failed.emit(request.name, message, details)

    def _on_cancelled(self, request: Request) -> None:
        skipped = len(self._queue)
        self._queue.clear()
        more = f" ({skipped} more file(s) not started)" if skipped else ""
        self.log.append(f"<p><b>Cancelled</b>: nothing was written for "
                        f"{html.escape(request.name)}{more}.</p>")

    def _show_error(self, message: str, details: str) -> None:
        self.error.show_message(message, details)

    def cancel(self) -> None:
        self._queue.clear()
        self.jobs.cancel()

    def shutdown(self) -> None:
        self._queue.clear()
        self.jobs.shutdown()

    def is_busy(self) -> bool:
        return self.jobs.is_busy()

    def _update_buttons(self) -> None:
        self.shard_size.setEnabled(self.target.currentData() == "safetensors-sharded")
        self.convert_button.setEnabled(bool(self.sources) and not self.jobs.is_busy())

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
             f"their {html.escape(str(v.get('method', '')))} checksums: {passed}"]
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


def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[,\s]+", text) if w)


def _combo(items: tuple[tuple[str, str | None], ...]) -> QComboBox:
    combo = QComboBox()
    for text, data in items:
        combo.addItem(text, data)
    return combo


def _row(*widgets: QWidget) -> QWidget:
    """Widgets side by side; the first one takes the spare width."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return row


def _local_paths(event: QDragEnterEvent | QDragMoveEvent | QDropEvent) -> list[str]:
    urls = event.mimeData().urls()
    return [u.toLocalFile() for u in urls if u.isLocalFile() and u.toLocalFile()]

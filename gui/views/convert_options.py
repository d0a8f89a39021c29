"""The Convert panel's options form: `ckpt-studio convert`'s flags as widgets, read back as a
`Request` (one file, with the options shown when it was asked for) that `convert_request` runs on
the worker. The panel itself (queue, results, drag-and-drop) is gui/views/convert.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
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
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.convert import ConvertOptions, ConvertResult, convert, default_destination
from core.convert.safetensors_sharded import parse_size
from core.model import Checkpoint
from core.progress import Progress

TARGETS = (("Safetensors (.safetensors)", "safetensors"),
           ("Sharded safetensors (folder + index)", "safetensors-sharded"),
           ("PyTorch (.pt, loads with weights_only=True)", "pt"))
DTYPES = (("Keep as they are", None), ("float16 (fp16)", "fp16"), ("bfloat16 (bf16)", "bf16"),
          ("float32 (fp32)", "fp32"))
WEIGHTS = "Detected weights"


@dataclass
class Request:
    """One file to convert, with the options that were shown when it was asked for."""

    source: str | Checkpoint
    target: str
    options: ConvertOptions
    out_dir: str | None
    overwrite: bool
    max_shard_size: int | None
    allow_overflow: bool = False  # write values a 16-bit cast overflows as infinity
    source_hash: str = "blake3"  # what identifies the source in the output ("sha256": as the Hub)

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
                   allow_overflow=request.allow_overflow, source_hash=request.source_hash,
                   progress=progress)


class ConvertOptionsForm(QGroupBox):
    """The "Options" box: format, dtype, section, training state, renames, keep/drop, output
    folder, overwrite, and the Convert button (the panel connects it). `options_changed` fires
    when what `options()` gives may have changed."""

    options_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Options", parent)
        column = QVBoxLayout(self)
        form = QFormLayout()
        column.addLayout(form)
        column.addStretch(1)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.target = _combo(TARGETS)
        self.shard_size = QLineEdit(placeholderText="5GB", maximumWidth=90)
        self.shard_size.setToolTip("Data per shard, e.g. 2GB, 500MB or 1GiB")
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
        self.sha256 = QCheckBox("Identify the source by its sha256, as the Hugging Face Hub shows it")
        self.sha256.setToolTip("The output's metadata records a hash of the source file: BLAKE3 "
                               "by default; sha256 takes about 0.6 s more per GB")
        form.addRow("", self.sha256)
        self.convert_button = QPushButton("Convert", default=True)
        form.addRow("", _row(QWidget(), self.convert_button))
        self._signal_changes()

    def _signal_changes(self) -> None:
        for combo in (self.dtype, self.section):
            combo.currentIndexChanged.connect(self.options_changed)
        self.strip_training.toggled.connect(self.options_changed)
        for edit in (self.strip_prefix, self.add_prefix, self.keep, self.drop):
            edit.editingFinished.connect(self.options_changed)
        self.renames.itemChanged.connect(self.options_changed)
        self.renames.model().rowsRemoved.connect(self.options_changed)

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

    def add_rename(self, pattern: str = "", replacement: str = "") -> None:
        row = self.renames.rowCount()
        self.renames.insertRow(row)
        self.renames.setItem(row, 0, QTableWidgetItem(pattern))
        self.renames.setItem(row, 1, QTableWidgetItem(replacement))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir.text())
        if folder:
            self.out_dir.setText(folder)

    def fill_sections(self, checkpoint: Checkpoint | None) -> None:
        """The Section choices: the detected weights, then every section holding tensors."""
        self.section.clear()
        self.section.addItem(WEIGHTS + (f" ({checkpoint.weights})" if checkpoint and
                                        checkpoint.weights else ""), None)
        for name, section in (checkpoint.sections.items() if checkpoint else ()):
            if section.tensors:
                self.section.addItem(f"{name} ({len(section.tensors):,} tensors)", name)

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
        """`source` with the options shown now; raises CheckpointError for a bad shard size."""
        target = self.target.currentData()
        shard = self.shard_size.text().strip()
        size = parse_size(shard) if shard and target == "safetensors-sharded" else None
        return Request(source, target, self.options(), self.out_dir.text().strip() or None,
                       self.overwrite.isChecked(), size,
                       source_hash="sha256" if self.sha256.isChecked() else "blake3")

    def update_enabled(self, can_convert: bool) -> None:
        self.shard_size.setEnabled(self.target.currentData() == "safetensors-sharded")
        self.convert_button.setEnabled(can_convert)


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

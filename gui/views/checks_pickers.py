"""The checks panel's model pickers: an editable list of runnables (an ONNX, TorchScript or .pt2
file, or a Hugging Face model folder) with a Browse menu. A folder is listed by what it runs as
(core.hf.config.runnable_label, e.g. "Hugging Face: BertModel (feature-extraction)") and stands
for its path; core.runtime.build_runner runs it as the transformers model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QMenu, QPushButton, QWidget

from gui.views.parts import hbox

ARTEFACTS = "Models (*.onnx *.pt *.pth *.pt2 *.ts *.jit);;All files (*)"
PLACEHOLDER = "an ONNX, TorchScript or .pt2 file, or a Hugging Face model folder"
OPTIONS = Qt.ItemDataRole.UserRole + 1  # an item's runner options
RunnerOptions = dict[str, Any] | None


class ArtefactPicker(QWidget):
    """A combo of runnables plus Browse… (a model file or a model folder)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox(editable=True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.lineEdit().setPlaceholderText(PLACEHOLDER)
        self.combo.setMinimumContentsLength(28)
        self.browse = QPushButton("Browse…")
        menu = QMenu(self)
        menu.addAction("Model file (ONNX, TorchScript, .pt2)…", lambda: self.choose("file"))
        menu.addAction("Hugging Face model folder…", lambda: self.choose("dir"))
        self.browse.setMenu(menu)
        row = hbox(self.combo, self.browse, grow=self.combo)
        self.setLayout(row)

    def add(self, path: str, options: RunnerOptions = None) -> int:
        """List `path` (once per `options`: a model folder's {"task": …, "pooling": …}); a model
        folder under its label. Its index."""
        for index in range(self.combo.count()):
            if self.combo.itemData(index) == path and self.combo.itemData(index, OPTIONS) == options:
                return index
        self.combo.addItem(_label(path, options), path)
        index = self.combo.count() - 1
        self.combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        self.combo.setItemData(index, options, OPTIONS)
        return index

    def select(self, path: str, options: RunnerOptions = None) -> None:
        self.combo.setCurrentIndex(self.add(path, options))

    def runner_options(self) -> RunnerOptions:
        """The keyword arguments core.runtime.build_runner gets for the chosen item (a model
        folder's task / pooling); None for a typed path or a file."""
        return self.combo.itemData(self.combo.currentIndex(), OPTIONS) if self._listed() else None

    def source(self) -> str:
        """The chosen runnable's path: the listed item's, or the text typed in."""
        if self._listed():
            return str(self.combo.itemData(self.combo.currentIndex()))
        return self.combo.currentText().strip()

    def _listed(self) -> bool:
        """Whether the text shown is the current listed item's (not typed over)."""
        index = self.combo.currentIndex()
        return index >= 0 and self.combo.itemText(index) == self.combo.currentText().strip() \
            and bool(self.combo.itemData(index))

    def label(self) -> str:
        return self.combo.currentText().strip()

    def choose(self, kind: str) -> None:
        settings = QSettings()
        start = str(settings.value("last_dir", ""))
        if kind == "dir":
            path = QFileDialog.getExistingDirectory(self, "Hugging Face model folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a model", start, ARTEFACTS)
        if path:
            settings.setValue("last_dir", str(Path(path).parent))
            self.select(path)


def _label(path: str, options: RunnerOptions) -> str:
    """A model folder's label ("Hugging Face: …" for its task), a file's path; a folder whose config
    cannot be read keeps its path (running it then says what is wrong)."""
    from core.errors import CheckpointError
    from core.hf.config import model_folder, runnable_label

    if not Path(path).is_dir() or model_folder(path) is None:
        return path
    try:
        options = options or {}
        return runnable_label(Path(path), options.get("task"), bool(options.get("pooling")))
    except CheckpointError:
        return path

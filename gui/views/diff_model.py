"""The diff view's model side: B can be the keys a model's `load_state_dict(strict=True)` expects
instead of a second file, as `ckpt-studio diff A --model SOURCE`. core.diff.model_keys builds the model
(on the meta device when it can: no memory, no weights) on the worker; this file holds the form
that asks for it and that job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QFrame, QLabel, QPushButton, QWidget

from core.model import Checkpoint, Section
from gui.views.arch_source import CODE_HINT, SourceField, kwargs_field
from gui.views.parts import hbox

NOTE = ("B becomes the keys this model's load_state_dict(strict=True) expects. Building it runs "
        "that code (on the meta device: no memory, no weights).")


@dataclass(frozen=True)
class ModelSource:
    """Side B as a model: an architecture source ('pkg.module:build', 'model.py:build', a Hugging
    Face folder) and its keyword arguments as JSON text ("" for none)."""

    source: str
    kwargs: str = ""

    def __str__(self) -> str:
        return self.source


def open_model(model: ModelSource) -> Checkpoint:
    """The worker's job: build the model and return its expected keys as side B, a checkpoint of
    core.diff.structure's MODEL_FORMAT (core.diff.diff_against_model compares A with those)."""
    from core.build import parse_kwargs
    from core.diff.structure import MODEL_FORMAT, model_keys

    keys = model_keys(model.source, parse_kwargs(model.kwargs), search_path=Path.cwd())
    return Checkpoint(Path(model.source), MODEL_FORMAT, {"model": Section("model", keys)},
                      weights="model")


class ModelForm(QFrame):
    """Asks for the model (architecture + arguments) to compare A with, or for another file B."""

    compare_requested = Signal(object)  # the ModelSource
    file_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.source = SourceField(kinds=("py", "dir"), placeholder=f"{CODE_HINT} or a model folder")
        self.kwargs = kwargs_field()
        self.note = QLabel(NOTE, wordWrap=True)
        self.note.setStyleSheet("color: palette(placeholder-text);")
        self.source.hint.connect(self.note.setText)
        self.compare_button = QPushButton("Compare with model")
        self.compare_button.setToolTip("As `ckpt-studio diff A --model SOURCE`")
        self.file_button = QPushButton("Use a file as B…")
        self.compare_button.clicked.connect(self.request)
        self.file_button.clicked.connect(self.file_requested)
        for edit in (self.source.edit, self.kwargs):
            edit.returnPressed.connect(self.request)
        form = QFormLayout(self)
        form.addRow("Model:", self.source)
        form.addRow("Arguments:", self.kwargs)
        form.addRow(hbox(self.note, self.compare_button, self.file_button, grow=self.note))

    def model(self) -> ModelSource:
        return ModelSource(self.source.text(), self.kwargs.text().strip())

    def set_model(self, model: ModelSource) -> None:
        self.source.set_text(model.source)
        self.kwargs.setText(model.kwargs)

    def request(self) -> None:
        self.compare_requested.emit(self.model())

    def set_idle(self, idle: bool) -> None:
        self.compare_button.setEnabled(idle)
        self.file_button.setEnabled(idle)

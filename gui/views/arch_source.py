"""The architecture fields the export panel and the diff view's model side share: a source field whose
Browse menu offers a Python file, a Hugging Face model folder or a saved model file, a JSON
keyword-arguments field, and the plain sentence saying what is wrong with a source before anything
runs (core.arch.source_kind decides what a source is)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QLineEdit, QMenu, QWidget

from core.errors import ExportError
from gui.views.parts import PathField

ALL_KINDS = ("py", "dir", "program")
KIND_LABELS = {"py": "Python file…", "dir": "Hugging Face model folder…",
               "program": "Saved model file (TorchScript, .pt2, pickled)…"}
SOURCE_HINT = "package.module:build, model.py:build, a model folder or a saved model file"
CODE_HINT = "package.module:build or model.py:build"
KWARGS_HINT = '{"channels": 8}  (optional)'
PROGRAM_FILTER = "Saved models (*.pt *.pth *.pt2 *.ts *.jit);;All files (*)"
CALLABLE_HINT = "Add the function or class that builds the model after the ':'."


class SourceField(PathField):
    """An architecture source. Browse opens a menu of `kinds` ("py", "dir", "program"); choosing a
    Python file fills in 'file.py:' and emits `hint` asking for the callable after the ':'."""

    hint = Signal(str)

    def __init__(self, kinds: Sequence[str] = ALL_KINDS, placeholder: str = SOURCE_HINT,
                 parent: QWidget | None = None) -> None:
        super().__init__(placeholder=placeholder, parent=parent)
        self.browse.clicked.disconnect()
        menu = QMenu(self)
        for kind in kinds:
            menu.addAction(KIND_LABELS[kind], lambda k=kind: self.choose_source(k))
        self.browse.setMenu(menu)

    def choose_source(self, kind: str) -> None:
        if kind == "dir":
            path = QFileDialog.getExistingDirectory(self, "Hugging Face model folder")
        else:
            flt = "Python files (*.py)" if kind == "py" else PROGRAM_FILTER
            path, _ = QFileDialog.getOpenFileName(self, "Architecture", "", flt)
        if not path:
            return
        self.set_text(f"{path}:" if kind == "py" else path)
        if kind == "py":
            self.edit.setFocus()
            self.hint.emit(CALLABLE_HINT)


def kwargs_field() -> QLineEdit:
    """The architecture's keyword arguments as JSON (parsed by core.build.parse_kwargs)."""
    return QLineEdit(placeholderText=KWARGS_HINT)


def source_problem(source: str, trust: bool = False, programs: bool = True) -> str:
    """Why `source` cannot be used as it is ("" when it can). `programs`: whether saved model files
    are accepted at all (they run code stored in the file, so they also need `trust`)."""
    from core.arch import source_kind

    if not source:
        what = SOURCE_HINT if programs else CODE_HINT
        return f"Give the model's architecture: {what}."
    try:
        kind = source_kind(source)
    except ExportError as exc:
        return exc.message
    if kind == "program" and not programs:
        return (f"'{Path(source).name}' is a file; give the code that builds the model instead "
                f"({CODE_HINT}).")
    if kind == "program" and not trust:
        return (f"'{Path(source).name}' is a saved model file: loading it runs code stored in "
                "the file. Tick 'Trust this file' if you trust where it came from.")
    return ""

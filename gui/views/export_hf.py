"""Hugging Face model folders in the export panel: the folder's model named as
"Hugging Face: BertModel (feature-extraction)" with the task selectable, and the worker calls that
describe and load it (core.hf: the architecture from config.json, strict loading by the class's
rules, the task's real inputs and output names). Nothing from the folder is run; transformers builds
its own classes only."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QVBoxLayout, QWidget

from core.hf.config import TASKS
from gui.jobs import LoadedModel
from gui.views.parts import hbox
from gui.worker import Job

if TYPE_CHECKING:  # pragma: no cover
    from core.hf.model import HFModel
    from core.inputs import InputSpec
    from core.inputs.preprocess import Preprocess

HF_PREFIX = "Hugging Face"
TOKENIZER_TEXT = "Record its tokenizer in the exported files"
POOLING_TEXT = "Pool inside the graph (sentence embedding)"


@dataclass
class HFChoice:
    """What a folder's config.json says the model is, for the chosen task."""

    folder: str
    task: str
    default_task: str  # the task the config's `architectures` was made for
    model_class: str  # the transformers class built for `task`
    specs: list[InputSpec]  # the task's inputs that the class's forward accepts, sized by the config
    pooling: str = ""  # a sentence-transformers folder's pooling that can go in the graph ("" none)
    tokenizer: tuple[str, ...] = ()  # the folder's tokenizer files (recorded by reference)

    def title(self) -> str:
        return f"{HF_PREFIX}: {self.model_class} ({self.task})"


@dataclass
class LoadedHF(LoadedModel):
    hf: HFModel | None = None


def hf_folder(path: str) -> str:
    """The model folder (with config.json) that `path` is or lies in; "" when there is none."""
    from core.hf.config import model_folder

    folder = model_folder(path) if path.strip() else None
    return str(folder) if folder is not None else ""


def describe_folder(folder: str, task: str | None) -> HFChoice:
    """The class transformers builds for `task` (default: the config's), built on the meta device:
    no memory, no weights read, so even a large model is named in well under a second."""
    import torch

    from core.hf.config import build_for_task, check_task, folder_config, infer_task
    from core.hf.model import input_specs

    config = folder_config(Path(folder))
    default = infer_task(config)
    task = check_task(task or default)
    with torch.device("meta"):
        model = build_for_task(Path(folder), config, task)
    from core.inputs.preprocess import TOKENIZER_FILES

    tokenizer = tuple(name for name in TOKENIZER_FILES if (Path(folder) / name).is_file())
    return HFChoice(folder, task, default, type(model).__name__, input_specs(model, config, task),
                    _pooling(Path(folder)), tokenizer)


def _pooling(folder: Path) -> str:
    """'mean_tokens, L2-normalised' for a sentence-transformers folder whose pooling core can put
    in the graph; "" for any other folder."""
    from core.errors import ExportError
    from core.hf.pooling import MODULES_FILE, pooling_plan

    if not (folder / MODULES_FILE).is_file():
        return ""
    try:
        modes, normalise = pooling_plan(folder)
    except ExportError:
        return ""
    return " + ".join(modes) + (", L2-normalised" if normalise else "")


def load_hf(folder: str, task: str, weights: str, strict: bool, pooling: bool = False,
            key: tuple[Any, ...] = ()) -> LoadedHF:
    """The folder's model for `task` with its weights (those beside config.json, or `weights`);
    `pooling`: followed by its sentence-transformers pooling (one output, the sentence embedding)."""
    from core.hf.model import load_hf_model

    own = not weights or Path(weights).resolve() == Path(folder).resolve()
    hf = load_hf_model(folder, task, weights=None if own else weights, strict=strict,
                       pooling=pooling)
    return LoadedHF(hf.module, hf.report, key, hf)


class HFModelRow(QWidget):
    """The model a folder holds and a task picker; hidden unless the source is a model folder.
    Describing runs on the worker; `described` follows (or `failed` with the plain sentence)."""

    described = Signal(object)  # HFChoice
    failed = Signal(str, str)
    task_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choice: HFChoice | None = None
        self.folder = ""
        self._job: Job | None = None
        self.title = QLabel(wordWrap=True)  # wraps rather than widening the form
        self.title.setAccessibleName("Hugging Face model")
        self.task = QComboBox()
        self.task.addItems(list(TASKS))
        self.task.setToolTip("What to export the model for: it decides the model class, the "
                             "inputs and the outputs.")
        self.task.activated.connect(lambda _index: self._task_chosen())
        self.pooling = QCheckBox(POOLING_TEXT, visible=False)
        self.pooling.toggled.connect(lambda _on: self.task_changed.emit(self.current_task()))
        self.tokenizer = QCheckBox(TOKENIZER_TEXT, checked=True, visible=False)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.title)
        column.addLayout(hbox(QLabel("Task:"), self.task, stretch_at=2))
        column.addWidget(self.pooling)
        column.addWidget(self.tokenizer)
        self.setVisible(False)

    def active(self) -> bool:
        return bool(self.folder)

    def set_source(self, source: str) -> None:
        """Follow the architecture source: describe it when it is a model folder."""
        folder = hf_folder(source) if Path(source.strip() or ".").is_dir() else ""
        if folder == self.folder:
            return
        self.folder, self.choice = folder, None
        self.pooling.setVisible(False)
        self.tokenizer.setVisible(False)
        self.setVisible(bool(folder))
        if folder:
            self._describe(None)
        else:
            self.shutdown()

    def pooled(self) -> bool:
        """Whether the export should end in the folder's sentence-transformers pooling."""
        return self.pooling.isVisibleTo(self) and self.pooling.isChecked()

    def text_preprocess(self) -> Preprocess | None:
        """The folder's tokenizer as a text preprocessing spec, when it is to be recorded."""
        from core.inputs.preprocess import Preprocess

        if not (self.tokenizer.isVisibleTo(self) and self.tokenizer.isChecked()):
            return None
        return Preprocess(kind="text", tokenizer=self.folder)

    def current_task(self) -> str:
        return self.choice.task if self.choice is not None else self.task.currentText()

    def _task_chosen(self) -> None:
        if self.folder and (self.choice is None or self.task.currentText() != self.choice.task):
            self._describe(self.task.currentText())
            self.task_changed.emit(self.task.currentText())

    def _describe(self, task: str | None) -> None:
        self.shutdown()
        self.title.setText(f"{HF_PREFIX}: reading {Path(self.folder).name}…")
        job = Job(describe_folder, self.folder, task, parent=self)
        job.succeeded.connect(self._on_described)
        job.failed.connect(self._on_failed)
        job.finished.connect(job.deleteLater)
        self._job = job
        job.start()

    def _on_described(self, choice: HFChoice) -> None:
        self._job = None
        self.choice = choice
        self.title.setText(choice.title())
        self.title.setToolTip(f"{choice.folder}\nThe config was made for {choice.default_task}.")
        self.task.setCurrentText(choice.task)
        self.pooling.setVisible(bool(choice.pooling))
        self.tokenizer.setVisible(bool(choice.tokenizer))
        self.tokenizer.setToolTip("By reference, with the hashes of " + ", ".join(choice.tokenizer))
        self.pooling.setToolTip(f"Its sentence-transformers pooling, from modules.json: {choice.pooling}; "
                                "the exported file returns the sentence embedding."
                                if choice.pooling else "")
        self.described.emit(choice)

    def _on_failed(self, message: str, details: str) -> None:
        self._job = None
        self.title.setText(f"{HF_PREFIX}: {Path(self.folder).name} cannot be built")
        self.failed.emit(message, details)

    def is_busy(self) -> bool:
        return self._job is not None

    def shutdown(self) -> None:
        """Drop the running description (its result is no longer wanted)."""
        job, self._job = self._job, None
        if job is not None:
            for signal in (job.succeeded, job.failed):
                with contextlib.suppress(RuntimeError, TypeError):
                    signal.disconnect()
            job.cancel()

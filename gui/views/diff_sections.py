"""The diff view's section pickers, as `ckpt-studio diff A B --section-a NAME --section-b NAME`: one
combo box per side listing that file's sections with tensors (model, ema, optimizer, ...), set to the
section the shown diff compares (core's default, the weights, until the user picks another). Picking
one asks the view to diff again (gui.views.diff_jobs.rediff_sections, on the worker)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.model import Checkpoint
from gui.views.diff_jobs import Opened

TIP = ("Which part of the file to compare, as the CLI's --section-{side}: the model weights, the "
       "EMA weights, the optimizer state, ... (default: the weights)")
ONE_TIP = "This file has one section with tensors."


def section_text(checkpoint: Checkpoint, name: str) -> str:
    """'ema · 11 tensors', 'model (weights) · 11 tensors'."""
    section = checkpoint.sections.get(name)
    count = len(section.tensors) if section is not None else 0
    label = f"{name} (weights)" if name == checkpoint.weights else name
    return f"{label} · {count:,} tensor{'s' if count != 1 else ''}"


class SectionPicker(QWidget):
    """'Section: [combo]' for one side; `picked(name)` only when the user changes it."""

    picked = Signal(str)

    def __init__(self, side: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.side = side
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.currentIndexChanged.connect(self._on_index)
        self.label = QLabel(f"Section of {side}:")
        self.label.setBuddy(self.combo)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.combo)
        row.addStretch(1)
        self._idle = True

    def set_checkpoint(self, checkpoint: Checkpoint, current: str) -> None:
        """List `checkpoint`'s sections with tensors (and `current`, compared now), `current` selected."""
        names = [n for n, s in checkpoint.sections.items() if s.tensors]
        if current not in names:
            names.append(current)
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            for name in names:
                self.combo.addItem(section_text(checkpoint, name), name)
            self.combo.setCurrentIndex(names.index(current))
        finally:
            self.combo.blockSignals(False)
        self.combo.setToolTip(TIP.format(side=self.side.lower()) if len(names) > 1 else ONE_TIP)
        self.set_idle(self._idle)

    def current(self) -> str | None:
        return self.combo.currentData()

    def names(self) -> list[str]:
        return [self.combo.itemData(i) for i in range(self.combo.count())]

    def set_idle(self, idle: bool) -> None:
        self._idle = idle
        self.combo.setEnabled(idle and self.combo.count() > 1)

    def _on_index(self, index: int) -> None:
        if index >= 0:
            self.picked.emit(self.combo.itemData(index))


def side_column(label: QWidget, picker: SectionPicker) -> QVBoxLayout:
    """A side's label with its section picker below it."""
    column = QVBoxLayout()
    column.setContentsMargins(0, 0, 0, 0)
    column.setSpacing(2)
    column.addWidget(label)
    column.addWidget(picker, 0, Qt.AlignmentFlag.AlignLeft)
    return column


def show_sections(picker_a: SectionPicker, picker_b: SectionPicker, opened: Opened | None) -> None:
    """Fill both pickers from the open files, the compared sections selected; B's is hidden when B
    is a model (its one section is the keys it expects)."""
    compared = opened.result.sections[0] if opened and opened.result.sections else None
    for picker, checkpoint, name, wanted in (
            (picker_a, opened and opened.a, compared and compared.section_a, True),
            (picker_b, opened and opened.b, compared and compared.section_b,
             opened is not None and not opened.result.against_model)):
        if checkpoint is not None and name is not None:
            picker.set_checkpoint(checkpoint, name)
        picker.setVisible(wanted and checkpoint is not None and name is not None)

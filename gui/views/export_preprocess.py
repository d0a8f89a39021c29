"""The export panel's preprocessing form: what the model's image input must look like (scale, mean,
std, channel order, raw pixel layout and dtype, resize and centre crop), recorded in the artefacts
and, with "Bake into the model", applied as the graph's first ops so the artefact takes raw pixels.

The form writes the same text `export --preprocess` takes and core parses it
(core.inputs.preprocess.parse_preprocess), so the app and the CLI accept exactly the same specs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from core.errors import CheckpointError
from core.inputs.preprocess import LAYOUTS, ORDERS, PIXEL_DTYPES, parse_preprocess
from gui.views.parts import hbox

if TYPE_CHECKING:  # pragma: no cover
    from core.inputs.preprocess import Preprocess

IMAGENET = {"scale": "1/255", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"}
BAKE_TEXT = "Bake into the model (the exported file takes raw pixels)"


class PreprocessBox(QGroupBox):
    """Checkable: unticked, nothing is recorded. `spec()` is the parsed spec (None when unticked or
    not valid; `error()` then says what is wrong)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Preprocessing (image input)", parent, checkable=True, checked=False)
        self.scale = QLineEdit(placeholderText="1  (e.g. 1/255)")
        self.mean = QLineEdit(placeholderText="0  (one value, or one per channel)")
        self.std = QLineEdit(placeholderText="1  (one value, or one per channel)")
        self.order, self.layout, self.dtype = QComboBox(), QComboBox(), QComboBox()
        for combo, items in ((self.order, ORDERS), (self.layout, LAYOUTS), (self.dtype, PIXEL_DTYPES)):
            combo.addItems([item.upper() if combo is not self.dtype else item for item in items])
        self.resize_edit = QLineEdit(placeholderText="none  (256: shorter side, or 256x256)")
        self.crop = QLineEdit(placeholderText="none  (224x224, from the centre)")
        self.bake = QCheckBox(BAKE_TEXT)
        self.imagenet = QPushButton("ImageNet values")
        self.imagenet.setToolTip("scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225")
        self.imagenet.clicked.connect(self.use_imagenet)
        self.spec_label = QLabel(wordWrap=True)
        self.spec_label.setStyleSheet("color: palette(placeholder-text);")
        self.error_label = QLabel(wordWrap=True, visible=False)
        self.error_label.setStyleSheet("color: rgb(200, 40, 40);")
        form = QFormLayout(self)
        for label, widget in (("Scale:", self.scale), ("Mean:", self.mean), ("Std:", self.std)):
            form.addRow(label, widget)
        form.addRow("Model wants:", hbox(self.order, QLabel("channels"), stretch_at=2))
        form.addRow("Raw pixels:", hbox(self.layout, self.dtype, stretch_at=2))
        form.addRow("Resize:", self.resize_edit)
        form.addRow("Centre crop:", self.crop)
        form.addRow("", hbox(self.imagenet, stretch_at=1))
        form.addRow(self.bake)  # spans both columns: the long label must not widen the panel
        form.addRow(self.spec_label)
        form.addRow(self.error_label)
        for edit in (self.scale, self.mean, self.std, self.resize_edit, self.crop):
            edit.textChanged.connect(self._update)
        for combo in (self.order, self.layout, self.dtype):
            combo.currentTextChanged.connect(self._update)
        self.toggled.connect(self._update)
        self._update()

    def text(self) -> str:
        """The spec in `export --preprocess` syntax, from the fields as they are."""
        items = [f"scale {self.scale.text().strip()}"] if self.scale.text().strip() else []
        for word, edit in (("mean", self.mean), ("std", self.std)):
            values = ",".join(v.strip() for v in edit.text().replace(" ", ",").split(",") if v.strip())
            items += [f"{word} {values}"] if values else []
        items += [self.order.currentText().lower(), f"layout {self.layout.currentText().lower()}",
                  self.dtype.currentText()]
        for word, edit in (("resize", self.resize_edit), ("crop", self.crop)):
            items += [f"{word} {edit.text().strip()}"] if edit.text().strip() else []
        return "image: " + ", ".join(items)

    def spec(self) -> Preprocess | None:
        if not self.isChecked():
            return None
        try:
            return parse_preprocess(self.text())
        except CheckpointError:
            return None

    def error(self) -> str:
        """Why the fields do not make a spec ("" when they do, or when the box is unticked)."""
        if not self.isChecked():
            return ""
        try:
            parse_preprocess(self.text())
        except CheckpointError as exc:
            return exc.message
        return ""

    def baked(self) -> bool:
        return self.isChecked() and self.bake.isChecked()

    def use_imagenet(self) -> None:
        for word, value in IMAGENET.items():
            getattr(self, word).setText(value)

    def _update(self) -> None:
        problem = self.error()
        self.error_label.setText(problem)
        self.error_label.setVisible(bool(problem))
        self.spec_label.setText(f"As text: {self.text()}" if self.isChecked() and not problem else "")
        self.spec_label.setVisible(bool(self.spec_label.text()))
        self.changed.emit()

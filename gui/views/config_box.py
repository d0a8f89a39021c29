"""The model config beside the tensors, for a Hugging Face model folder: the summary core read from
its config.json (checkpoint.metadata["config"]) and which weights file of the folder was opened."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QWidget

ROWS = (("model_type", "Type"), ("architectures", "Architecture"), ("hidden_size", "Hidden size"),
        ("num_hidden_layers", "Layers"), ("vocab_size", "Vocabulary"), ("torch_dtype", "Dtype"))


class ConfigBox(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model config", parent)
        self.form = QFormLayout(self)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.values: dict[str, QLabel] = {}
        for key, title in (*ROWS, ("weights_file", "Weights")):
            label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = label
            self.form.addRow(f"{title}:", label)
        self.setVisible(False)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Shown for a folder (metadata has "folder"); rows the config lacks are hidden."""
        config = metadata.get("config") or {}
        shown = dict(config) | ({"weights_file": metadata["weights_file"]}
                                if metadata.get("weights_file") else {})
        for key, label in self.values.items():
            value = shown.get(key)
            text = ", ".join(map(str, value)) if isinstance(value, list) else \
                f"{value:,}" if isinstance(value, int) else "" if value is None else str(value)
            label.setText(text)
            self.form.setRowVisible(label, bool(text))
        self.setToolTip(str(metadata.get("folder", "")))
        self.setTitle("Model config" if config else "Model folder (no config.json)")
        self.setVisible("folder" in metadata)

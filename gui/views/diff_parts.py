"""Small widget helpers of the diff view: the side labels, the status filter buttons and their colour
swatches, the key table and its column widths."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPalette, QPixmap
from PySide6.QtWidgets import QFrame, QHeaderView, QLabel, QTableView, QToolButton

from core.diff.structure import MODEL_FORMAT
from core.report import human_bytes
from gui.models import diff_table
from gui.models.diff_table import DiffTableModel
from gui.widgets import sortable_table

SAMPLES = {diff_table.STATUS: "Shape mismatch", diff_table.SHAPE_A: "[32000, 4096]",
           diff_table.DTYPE_A: "bfloat16", diff_table.SHAPE_B: "[32000, 4096]",
           diff_table.DTYPE_B: "bfloat16", diff_table.VALUES: "Identical",
           diff_table.MAX_ABS: "1.23e-05", diff_table.COSINE: "0.999999"}


def describe_sides(labels: tuple[QLabel, QLabel], paths: tuple[str, str], opened: Any,
                   model_kwargs: str) -> None:
    """Each side's name, format and size on disk (or the keys a model expects)."""
    o = opened
    for label, side, path, fmt, size in (
            (labels[0], "A", paths[0], o and o.a.format, o and o.size_a),
            (labels[1], "B", paths[1], o and o.b.format, o and o.size_b)):
        info = f"{fmt} · {human_bytes(size or 0)} on disk" if o else "Opening…"
        if o and fmt == MODEL_FORMAT:
            args = html.escape(model_kwargs) + " · " if model_kwargs else ""
            info = f"model · {args}{len(o.b.sections['model'].tensors):,} keys expected"
        label.setText(f"<b>{side}</b>&nbsp; {html.escape(Path(path).name)}<br>"
                      f"<span style='color:#888888'>{info}</span>")
        label.setToolTip(path)


def side_label() -> QLabel:
    label = QLabel(textFormat=Qt.TextFormat.RichText)
    label.setFrameShape(QFrame.Shape.StyledPanel)
    label.setMargin(6)
    return label


def filter_button(slot: Callable[[], None]) -> QToolButton:
    button = QToolButton()
    button.setCheckable(True)
    button.setChecked(True)
    button.setAutoRaise(True)  # checked: framed; unchecked: flat
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setToolTip("Show or hide the keys with this status")
    button.toggled.connect(lambda _on: slot())
    return button


def paint_swatches(status_buttons: dict[str, QToolButton], value_buttons: dict[str, QToolButton],
                   palette: QPalette) -> None:
    """Each filter button's icon: its status colour, for the current palette."""
    for buttons, rgbs in ((status_buttons, diff_table.STATUS_RGB), (value_buttons, diff_table.VALUE_RGB)):
        for status, button in buttons.items():
            button.setIcon(swatch_icon(diff_table.swatch(rgbs[status], palette)))


def swatch_icon(colour: QColor) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(colour)
    return QIcon(pixmap)


def table_view(model: DiffTableModel) -> QTableView:
    return sortable_table(model)


def size_columns(view: QTableView) -> None:
    """The name column takes the spare width; the others fit their widest expected text."""
    header, metrics = view.horizontalHeader(), view.fontMetrics()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(diff_table.NAME, QHeaderView.ResizeMode.Stretch)
    for column in range(1, view.model().columnCount()):
        title = str(view.model().headerData(column, Qt.Orientation.Horizontal))
        width = max(metrics.horizontalAdvance(SAMPLES[column]), metrics.horizontalAdvance(title))
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(column, width + 30)

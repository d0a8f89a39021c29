"""The input spec editor: one row per input (name, dtype, one cell per dim) and the text syntax of
core.inputs below it, kept in sync both ways. A dim cell takes `3`, `batch`, `batch(1..64)` or
`batch(1..64)=8`. Parsing and formatting are core's (`parse_specs` / `format_specs`); the widget only
lays the text out in cells."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.errors import CheckpointError
from core.inputs import DTYPES, InputSpec, format_specs, parse_specs
from gui.models.parity_table import status_color

VALUES_ROLE = Qt.ItemDataRole.UserRole  # on the name cell: the input's value range, kept as text
FIXED_COLUMNS = 2  # name, dtype; then one column per dim


class SpecEditor(QWidget):
    """`specs()` is the parsed list ([] when empty, None while the text is not valid)."""

    changed = Signal()

    def __init__(self, empty_hint: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._specs: list[InputSpec] | None = []
        self._syncing = False
        self.table = QTableWidget(0, FIXED_COLUMNS + 1)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.itemChanged.connect(self._table_edited)
        self.text_edit = QPlainTextEdit(placeholderText=empty_hint or "x: float32[batch(1..64), 3, "
                                        "224, 224]; mask: bool[batch, 16]")
        self.text_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text_edit.setFixedHeight(self.text_edit.fontMetrics().lineSpacing() * 2 + 14)
        self._debounce = QTimer(self, singleShot=True, interval=400)
        self._debounce.timeout.connect(self._text_edited)
        self.text_edit.textChanged.connect(self._debounce.start)
        self.error_label = QLabel(wordWrap=True)
        self.error_label.setVisible(False)
        self.toolbar = QHBoxLayout()
        self.add_button = QPushButton("Add input")
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        for button in (self.add_button, self.remove_button):
            self.toolbar.addWidget(button)
        self.toolbar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(self.toolbar)
        layout.addWidget(self.text_edit)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        self._update_columns()

    # -- public --------------------------------------------------------------------------------
    def specs(self) -> list[InputSpec] | None:
        return self._specs

    def error(self) -> str:
        return self.error_label.text() if self._specs is None else ""

    def text(self) -> str:
        return self.text_edit.toPlainText().strip()

    def set_text(self, text: str) -> None:
        """Replace everything with `text` (parsed now; the table follows when it is valid)."""
        self._debounce.stop()
        self._syncing = True
        self.text_edit.setPlainText(text)
        self._syncing = False
        self._text_edited()

    def set_specs(self, specs: list[InputSpec]) -> None:
        self.set_text(format_specs(specs) if specs else "")

    def add_row(self, spec: InputSpec | None = None) -> None:
        self._syncing = True
        row = self.table.rowCount()
        self.table.insertRow(row)
        name = spec.name if spec else ("x" if row == 0 else f"input{row}")
        item = QTableWidgetItem(name)
        if spec is not None and spec.values is not None:
            item.setData(VALUES_ROLE, f"{spec.values[0]:g}..{spec.values[1]:g}")
        self.table.setItem(row, 0, item)
        combo = QComboBox()
        combo.addItems(DTYPES)
        combo.setCurrentText(spec.dtype if spec else "float32")
        combo.currentTextChanged.connect(self._table_edited)
        self.table.setCellWidget(row, 1, combo)
        dims = [d.to_text() for d in spec.dims] if spec else []
        self._update_columns(len(dims))
        for i, text in enumerate(dims):
            self.table.setItem(row, FIXED_COLUMNS + i, QTableWidgetItem(text))
        self._syncing = False
        if spec is None:
            self._table_edited()

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        for row in rows or [self.table.rowCount() - 1]:
            if row >= 0:
                self.table.removeRow(row)
        self._table_edited()

    # -- syncing -------------------------------------------------------------------------------
    def _row_text(self, row: int) -> str:
        name_item = self.table.item(row, 0)
        name = name_item.text().strip() if name_item else ""
        combo = self.table.cellWidget(row, 1)
        dtype = combo.currentText() if isinstance(combo, QComboBox) else "float32"
        dims = []
        for col in range(FIXED_COLUMNS, self.table.columnCount()):
            item = self.table.item(row, col)
            if item is not None and item.text().strip():
                dims.append(item.text().strip())
        values = name_item.data(VALUES_ROLE) if name_item else None
        return f"{name}: {dtype}[{', '.join(dims)}]" + (f" in {values}" if values else "")

    def _table_edited(self, *_: object) -> None:
        if self._syncing:
            return
        self._update_columns()
        rows = [self._row_text(r) for r in range(self.table.rowCount())]
        self._parse("; ".join(rows), from_table=True)

    def _text_edited(self) -> None:
        if not self._syncing:
            self._parse(self.text(), from_table=False)

    def _parse(self, text: str, from_table: bool) -> None:
        try:
            specs = parse_specs(text) if text.strip() else []
        except CheckpointError as exc:
            self._specs = None
            self._show_error(exc.message)
        else:
            self._specs = specs
            self._show_error("")
            self._syncing = True
            if from_table:
                self.text_edit.setPlainText(format_specs(specs) if specs else "")
            else:
                self._fill_table(specs)
            self._syncing = False
        self.changed.emit()

    def _fill_table(self, specs: list[InputSpec]) -> None:
        self.table.setRowCount(0)
        for spec in specs:
            self.add_row(spec)
        self._update_columns()

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))
        color = status_color(self.palette(), "fail").name()
        self.error_label.setStyleSheet(f"background: {color}; padding: 3px; border-radius: 3px;")
        self.text_edit.setStyleSheet(
            f"QPlainTextEdit {{ border: 1px solid {color}; }}" if message else "")

    def _update_columns(self, need: int = 0) -> None:
        """One empty dim column after the last used one, so a dim can always be added."""
        used = need
        for row in range(self.table.rowCount()):
            for col in range(self.table.columnCount() - 1, FIXED_COLUMNS - 1, -1):
                item = self.table.item(row, col)
                if item is not None and item.text().strip():
                    used = max(used, col - FIXED_COLUMNS + 1)
                    break
        was = self._syncing
        self._syncing = True
        self.table.setColumnCount(FIXED_COLUMNS + used + 1)
        self._syncing = was
        labels = ["Name", "dtype"] + [f"dim {i}" for i in range(used + 1)]
        self.table.setHorizontalHeaderLabels(labels)
        for col in range(FIXED_COLUMNS, self.table.columnCount()):
            self.table.setColumnWidth(col, 96)
        self.table.setColumnWidth(0, 90)
        self.table.setColumnWidth(1, 92)
        dim_color = self.palette().color(QPalette.ColorRole.PlaceholderText)
        self.table.horizontalHeaderItem(self.table.columnCount() - 1).setForeground(dim_color)
        self._fit_height()

    def _fit_height(self) -> None:
        """As tall as its rows (one to four), so the panel keeps its space for results."""
        rows = min(max(self.table.rowCount(), 1), 4)
        height = (self.table.horizontalHeader().sizeHint().height()
                  + rows * self.table.verticalHeader().defaultSectionSize()
                  + self.table.horizontalScrollBar().sizeHint().height()
                  + 2 * self.table.frameWidth())
        self.table.setFixedHeight(height)

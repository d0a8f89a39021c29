"""The convert panel's queue: one row per file asked for, with its status (waiting, converting n%,
written, failed with the sentence, cancelled) and a button to cancel that file alone."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

FILE, STATUS, ACTION = range(3)
WAITING, RUNNING, WRITTEN, FAILED, CANCELLED = "waiting", "running", "written", "failed", "cancelled"
COLORS = {WRITTEN: "#2e9e43", FAILED: "#d0453a", CANCELLED: "#888888"}


class ConvertQueue(QTableWidget):
    cancel_requested = Signal(int)  # the row of the file to cancel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 3, parent)
        self.states: list[str] = []
        self.setHorizontalHeaderLabels(["File", "Status", ""])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setShowGrid(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(FILE, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(FILE, 220)
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(ACTION, QHeaderView.ResizeMode.ResizeToContents)
        self.setVisible(False)

    def add(self, name: str, path: str) -> int:
        """A new waiting row for `name`; returns its row."""
        row = self.rowCount()
        self.insertRow(row)
        item = QTableWidgetItem(name)
        item.setToolTip(path)
        self.setItem(row, FILE, item)
        self.setItem(row, STATUS, QTableWidgetItem())
        button = QPushButton("Cancel")
        button.setToolTip(f"Cancel converting {name}; the other files go on.")
        button.clicked.connect(lambda: self.cancel_requested.emit(row))
        self.setCellWidget(row, ACTION, button)
        self.states.append(WAITING)
        self.set_state(row, WAITING, "Waiting")
        self.setVisible(True)
        self.scrollToItem(item)
        return row

    def set_state(self, row: int, state: str, text: str, details: str = "") -> None:
        self.states[row] = state
        item = self.item(row, STATUS)
        item.setText(text)
        item.setToolTip(details or text)
        item.setForeground(QBrush(QColor(COLORS[state])) if state in COLORS else QBrush())
        button = self.cellWidget(row, ACTION)
        if isinstance(button, QPushButton):
            button.setEnabled(state in (WAITING, RUNNING))

    def status_text(self, row: int) -> str:
        return self.item(row, STATUS).text()

    def cancel_button(self, row: int) -> QPushButton:
        button = self.cellWidget(row, ACTION)
        assert isinstance(button, QPushButton)
        return button

"""Small shared widgets: a "Details" expander, the findings banner, a message page, a table."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

WARNING_STYLE = (
    "#Banner { background: rgba(255, 176, 32, 45); border: 1px solid rgba(214, 140, 0, 160);"
    " border-radius: 4px; }"
)


class DetailsBox(QWidget):
    """A "Details" toggle button and the read-only text it shows or hides."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton(text="Details", checkable=True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setMaximumHeight(160)
        self.text.setVisible(False)
        self.toggle.toggled.connect(self._on_toggled)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.text)

    def set_details(self, details: str) -> None:
        self.text.setPlainText(details)
        self.toggle.setChecked(False)
        self.setVisible(bool(details))

    def _on_toggled(self, shown: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.text.setVisible(shown)


class Banner(QFrame):
    """A warning strip: one bold sentence and a Details expander (e.g. the scan findings)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setStyleSheet(WARNING_STYLE)
        self.title = QLabel(wordWrap=True)
        bold = QFont(self.title.font())
        bold.setBold(True)
        self.title.setFont(bold)
        self.details = DetailsBox()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.details)
        self.setVisible(False)

    def show_message(self, title: str, details: str) -> None:
        self.title.setText(title)
        self.details.set_details(details)
        self.setVisible(True)


class MessagePage(QWidget):
    """A centred plain sentence with a Details expander and an optional action button."""

    action = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.icon = QLabel()
        self.message = QLabel(wordWrap=True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = QFont(self.message.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.message.setFont(font)
        self.details = DetailsBox()
        self.button = QPushButton()
        self.button.clicked.connect(self.action)
        column = QVBoxLayout()
        column.addStretch(1)
        column.addWidget(self.icon)
        column.addWidget(self.message)
        column.addWidget(self.details)
        column.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        column.addStretch(2)
        row = QHBoxLayout(self)
        row.addStretch(1)
        row.addLayout(column, 4)
        row.addStretch(1)

    def show_message(self, message: str, details: str = "", button: str = "",
                     error: bool = True) -> None:
        kind = QStyle.StandardPixmap.SP_MessageBoxWarning if error else \
            QStyle.StandardPixmap.SP_MessageBoxInformation
        self.icon.setPixmap(self.style().standardIcon(kind).pixmap(48, 48))
        self.message.setText(message)
        self.details.set_details(details)
        self.button.setText(button)
        self.button.setVisible(bool(button))


def sortable_table(model: QAbstractItemModel) -> QTableView:
    """A compact table over `model`: whole-row selection, no grid, fixed row height, sorting that
    starts unsorted (a third click on a header goes back to the model's order)."""
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 6)
    view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    view.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
    view.setSortingEnabled(True)
    view.horizontalHeader().setSortIndicatorClearable(True)
    return view

"""The checks panel's parity results: a summary line, the pass/fail legend, why it passed or failed
(core's reason: tolerance profile, task-level verdicts), core's notes, the table per output and input
shape (gui.models.parity_table) in a "Cases" tab, "Save report…" and "Test the saved cases again"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.models.parity_table import ParityTableModel, legend_html
from gui.views.parity_inputs import saved_cases
from gui.views.parts import hbox

if TYPE_CHECKING:  # pragma: no cover
    from core.checks.parity import ParityResult

RETEST_TIP = ("Put the saved failing cases in 'Input files', then run parity again to test exactly "
              "those inputs")


class ParityResultsBox(QGroupBox):
    """Shows one ParityResult; the buttons are connected by the panel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Parity results", parent)
        self.summary = QLabel("Run a parity check to compare the two models' outputs.")
        font = QFont(self.summary.font())
        font.setBold(True)
        self.summary.setFont(font)
        self.legend = QLabel()
        self.reason = QLabel(wordWrap=True)
        self.notes = QLabel(wordWrap=True)
        self.table_model = ParityTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(110)  # a few rows stay readable beside a depth plot
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.save_parity = QPushButton("Save report…")
        self.retest = QPushButton("Test the saved cases again")
        self.retest.setToolTip(RETEST_TIP)
        self.retest.setVisible(False)
        self.buttons = hbox(self.retest, self.save_parity, stretch_at=1)
        self.body = QVBoxLayout(self)
        self.body.addLayout(hbox(self.summary, self.legend, stretch_at=1))
        self.body.addWidget(self.reason)
        self.body.addWidget(self.notes)
        self.tabs = QTabWidget()  # the cases; the panel adds "Where it diverges"
        self.tabs.addTab(self.table, "Cases")
        self.body.addWidget(self.tabs, 1)
        self.body.addLayout(self.buttons)
        self.notes.setVisible(False)
        self.reason.setVisible(False)

    def show_result(self, result: ParityResult) -> tuple[int, int]:
        """Fill the table and the summary; (cases passed, cases in all)."""
        self.table_model.set_result(result)
        self.tabs.setCurrentIndex(0)
        self.table.resizeColumnsToContents()
        passed, total = self.table_model.counts()
        self.summary.setText(f"{'✓' if result.passed else '✗'}  {passed} of {total} cases pass")
        self.legend.setText(legend_html(self.palette()))
        self.reason.setText(result.reason())  # the profile and task verdicts behind the verdict
        self.reason.setVisible(True)
        self.notes.setText("\n".join(result.notes))
        self.notes.setVisible(bool(result.notes))
        self.retest.setVisible(bool(saved_cases(result)))
        return passed, total


"""The diff view's remap suggestions: one checkable row per core RemapSuggestion (what it renames,
how many keys it makes match, whether it is ambiguous) and the "Apply and save…" button."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.diff.remap import RemapRule, RemapSuggestion, rules_of

SUGGESTION_ROLE = Qt.ItemDataRole.UserRole


class SuggestionsBox(QGroupBox):
    apply_requested = Signal()
    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Remap suggestions (rename A's keys to match B)", parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Rename", "Keys it matches", "Note"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemChanged.connect(lambda *_: self.selection_changed.emit())
        self.empty = QLabel(wordWrap=True)
        self.apply_button = QPushButton("Apply and save…")
        self.apply_button.setToolTip("Write A with the checked renames as a new safetensors file "
                                     "(verified), then compare that file with B")
        self.apply_button.clicked.connect(self.apply_requested)
        column = QVBoxLayout()
        column.addStretch(1)
        column.addWidget(self.apply_button)
        layout = QHBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.empty, 1)
        layout.addLayout(column)

    def set_suggestions(self, suggestions: list[RemapSuggestion], differs: bool) -> None:
        """Unambiguous suggestions start checked; `differs`: whether the files differ at all."""
        self.tree.clear()
        for s in suggestions:
            item = QTreeWidgetItem([s.description, f"{s.explains:,}", "ambiguous" if s.ambiguous else ""])
            item.setData(0, SUGGESTION_ROLE, s)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Unchecked if s.ambiguous else Qt.CheckState.Checked)
            item.setToolTip(0, tooltip(s))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
        self.empty.setText("" if suggestions else "No rename would make more keys match." if differs
                           else "Every key matches; there is nothing to rename.")
        self.empty.setVisible(not suggestions)
        self.tree.setVisible(bool(suggestions))

    def checked_rules(self) -> list[RemapRule]:
        """The rules of the checked suggestions, in the order they were suggested."""
        items = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        chosen = [i.data(0, SUGGESTION_ROLE) for i in items if i.checkState(0) == Qt.CheckState.Checked]
        return rules_of(chosen, ambiguous=True)

    def set_idle(self, idle: bool) -> None:
        self.apply_button.setEnabled(idle and bool(self.checked_rules()))


def tooltip(s: RemapSuggestion) -> str:
    lines = [f"Makes {s.explains:,} key(s) of A match B."]
    if s.breaks:
        lines.append(f"{s.breaks:,} key(s) that match now would no longer match.")
    if s.ambiguous:
        lines.append("Ambiguous: another reading fits as well, or keys are paired by position; "
                     "check it before applying.")
    lines += [f"  {old}  →  {new}" for old, new in s.examples]
    return "\n".join(lines)

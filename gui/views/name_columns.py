"""Readable tensor names in tables and trees: elided in the middle (the layer number and the leaf
both stay visible), a name column sized to its content within reason, and Ctrl+C copying the
selected names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

from PySide6.QtCore import QEvent, QModelIndex, QObject, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeView

NAME_MIN_WIDTH = 160
NAME_MAX_WIDTH = 620  # a wider name is elided in the middle; the tooltip has it whole
MEASURED_NAMES = 4000  # enough to find the longest name pattern without measuring 200k rows
NAME_PADDING = 28
NAME_ROOM_FLOOR = 100


def readable_names(view: QAbstractItemView, name_of: Callable[[QModelIndex], str | None]) -> QAction:
    """Middle elision and a Copy action (Ctrl+C, also in the context menu) on `view`.
    `name_of` gives the full name of a row's index, or None for rows with nothing to copy."""
    view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    copy = QAction("Copy name", view)
    copy.setShortcut(QKeySequence.StandardKey.Copy)
    copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # shown in the menu; the key is below
    copy.triggered.connect(lambda: copy_selected_names(view, name_of))
    view.addAction(copy)
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
    view.installEventFilter(_CopyKey(copy, view))
    return copy


class _CopyKey(QObject):
    """Item views copy only the current cell's text on Ctrl+C; this copies the full names instead."""

    def __init__(self, copy: QAction, parent: QObject) -> None:
        super().__init__(parent)
        self._copy = copy

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and isinstance(event, QKeyEvent) \
                and event.matches(QKeySequence.StandardKey.Copy):
            event.accept()
            if kind == QEvent.Type.KeyPress:
                self._copy.trigger()
            return True
        return False


def selected_names(view: QAbstractItemView, name_of: Callable[[QModelIndex], str | None]) -> list[str]:
    """The names of the selected rows in view order (or of the current row when none is selected)."""
    selection = view.selectionModel()
    rows = selection.selectedRows(0) if selection is not None else []
    if not rows and view.currentIndex().isValid():
        rows = [view.currentIndex().siblingAtColumn(0)]
    rows = sorted(rows, key=lambda index: view.visualRect(index).top())
    return [name for name in (name_of(index) for index in rows) if name]


def copy_selected_names(view: QAbstractItemView, name_of: Callable[[QModelIndex], str | None]) -> str:
    text = "\n".join(selected_names(view, name_of))
    if text:
        QGuiApplication.clipboard().setText(text)
    return text


def fit_name_column(view: QAbstractItemView, header: QHeaderView, column: int,
                    names: Iterable[tuple[str, int]]) -> int:
    """Fit `column` now and again whenever the view is resized (see _fit_now)."""
    measured = list(islice(names, MEASURED_NAMES))
    refit = view.findChild(_Refit)
    if refit is None:
        refit = _Refit(view, header, column)
        view.viewport().installEventFilter(refit)
    refit.names = measured
    return _fit_now(view, header, column, measured)


class _Refit(QObject):
    """Fits the name column again when the view's width changes (the room for names changes)."""

    def __init__(self, view: QAbstractItemView, header: QHeaderView, column: int) -> None:
        super().__init__(view)
        self.view, self.header, self.column = view, header, column
        self.names: list[tuple[str, int]] = []
        self.width = -1

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize and self.view.viewport().width() != self.width:
            self.width = self.view.viewport().width()
            _fit_now(self.view, self.header, self.column, self.names)
        return False


def _fit_now(view: QAbstractItemView, header: QHeaderView, column: int,
             names: list[tuple[str, int]]) -> int:
    """Widen `column` to the longest of `names` ((text, tree depth) pairs; the first MEASURED_NAMES),
    between NAME_MIN_WIDTH and NAME_MAX_WIDTH, narrower (down to NAME_ROOM_FLOOR) when the other
    columns leave less room; a longer name is elided in the middle. Spare width goes to the last column."""
    metrics = view.fontMetrics()
    indent = view.indentation() if isinstance(view, QTreeView) else 0
    widest = 0
    for name, depth in names:
        widest = max(widest, metrics.horizontalAdvance(name) + indent * (depth + 1))
    width = max(NAME_MIN_WIDTH, min(NAME_MAX_WIDTH, widest + NAME_PADDING))
    others = sum(header.sectionSize(c) for c in range(header.count() - 1)
                 if c != column and not header.isSectionHidden(c))
    last = header.count() - 1
    others += int(header.property("last_width") or 0) if last != column else 0
    room = view.viewport().width() - others  # the other columns stay whole, no sideways scrolling
    if room >= NAME_ROOM_FLOOR:  # else the view is too narrow anyway: scrolling beats a 3-letter name
        width = min(width, room)
    header.setStretchLastSection(True)
    header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
    header.resizeSection(column, width)
    return width


def fit_text_columns(view: QAbstractItemView, header: QHeaderView, texts: dict[int, Iterable[str]]) -> None:
    """Size each column to its title and its widest text (the first MEASURED_NAMES texts)."""
    metrics = view.fontMetrics()
    for column, column_texts in texts.items():
        title = str(view.model().headerData(column, Qt.Orientation.Horizontal))
        widest = max((metrics.horizontalAdvance(t) for t in islice(column_texts, MEASURED_NAMES)), default=0)
        header.resizeSection(column, max(widest, metrics.horizontalAdvance(title)) + NAME_PADDING)

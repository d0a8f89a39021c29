"""The main window's menus and toolbar, the recent-files list and the About text.

`build_menus(window, panels)` makes File / Edit / Tools / Help and the toolbar, wired to the
window's slots, and returns the actions the window keeps (`window.open_action`, ...). The recent
files live in QSettings ("recent_files"), newest first.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import QMenu, QStyle, QToolBar, QWidget

from core import __version__
from gui.views.export_capabilities import show_capabilities

if TYPE_CHECKING:  # pragma: no cover
    from gui.app import MainWindow

APP_NAME = "Checkpoint Studio"
MAX_RECENT = 10
# the toolbar icon of each optional panel (gui.app.OPTIONAL_PANELS)
PANEL_PIXMAPS = {"export": QStyle.StandardPixmap.SP_ArrowForward,
                 "checks": QStyle.StandardPixmap.SP_DialogApplyButton}


@dataclass
class MenuActions:
    """The actions the window and its tests reach by name."""

    open: QAction
    compare: QAction
    convert: QAction
    recent_menu: RecentFilesMenu
    panels: dict[str, QAction] = field(default_factory=dict)


def build_menus(window: MainWindow, panels: Mapping[str, tuple[str, str, str, str]]) -> MenuActions:
    """The menu bar and toolbar of `window`; `panels` (key -> module, class, title, shortcut) get a
    Tools entry when their module exists."""
    icon, bar = window.style().standardIcon, window.menuBar()
    act = partial(add_action, window)
    file_menu = bar.addMenu("&File")
    open_action = act(file_menu, "&Open…", "Ctrl+O", window.choose_files,
                      icon(QStyle.StandardPixmap.SP_DialogOpenButton))
    act(file_menu, "Open &Folder…", "Ctrl+Shift+O", window.choose_folder,
        icon(QStyle.StandardPixmap.SP_DirOpenIcon))
    compare = act(file_menu, "Co&mpare Two Files…", "Ctrl+D", window.choose_compare,
                  icon(QStyle.StandardPixmap.SP_FileDialogContentsView))
    recent = RecentFilesMenu("Open &Recent", file_menu)
    recent.chosen.connect(lambda path: window.open_files([path]))
    file_menu.addMenu(recent)
    act(file_menu, "&Close", "Ctrl+W", lambda: window.close_tab(window.tabs.currentIndex()))
    file_menu.addSeparator()
    act(file_menu, "&Quit", "Ctrl+Q", window.close)
    act(bar.addMenu("&Edit"), "&Filter Names", "Ctrl+F", window.focus_filter)
    tools = bar.addMenu("&Tools")
    convert = act(tools, "&Convert…", "Ctrl+Shift+C", lambda: window.open_convert(),
                  icon(QStyle.StandardPixmap.SP_DialogSaveButton))
    actions = MenuActions(open_action, compare, convert, recent)
    for key, (module, _cls, title, shortcut) in panels.items():
        if module_exists(module):
            actions.panels[key] = act(tools, f"&{title}…", shortcut,
                                      lambda _checked=False, k=key: window.open_panel(k),
                                      icon(PANEL_PIXMAPS[key]))
    help_menu = bar.addMenu("&Help")
    act(help_menu, "&Capabilities…", None, lambda: show_capabilities(window))
    act(help_menu, f"&About {APP_NAME}", None, window.show_about)
    toolbar = QToolBar("Main", movable=False, objectName="MainToolBar")
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    for action in (open_action, compare, convert, *actions.panels.values()):
        toolbar.addAction(action)
    window.addToolBar(toolbar)
    convert_button = toolbar.widgetForAction(convert)  # a drop target: files dropped here convert
    convert_button.setAcceptDrops(True)
    convert_button.installEventFilter(FileDropTarget(window.convert_dropped, convert_button))
    convert.setToolTip("Convert checkpoints (Ctrl+Shift+C); drop files on this button to convert them")
    return actions


class FileDropTarget(QObject):
    """Makes the widget it filters accept dropped local files and hand their paths to `dropped`."""

    def __init__(self, dropped: Callable[[list[str]], object], parent: QWidget) -> None:
        super().__init__(parent)
        self._dropped = dropped

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kinds = (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop)
        if event.type() not in kinds or not isinstance(event, QDropEvent):  # QDragEnterEvent is one
            return False
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile() and u.toLocalFile()]
        if paths:
            event.acceptProposedAction()
            if event.type() == QEvent.Type.Drop:
                self._dropped(paths)
        return True


def add_action(owner: QWidget, menu: QMenu, text: str, shortcut: str | None,
               slot: Callable[[], object], icon: QIcon | None = None) -> QAction:
    """A menu entry owned by `owner` (the window), its shortcut shown in the tooltip."""
    action = QAction(text, owner)
    if icon is not None:
        action.setIcon(icon)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{text.replace('&', '').rstrip('…')} ({shortcut})")
    action.triggered.connect(slot)
    menu.addAction(action)
    return action


class RecentFilesMenu(QMenu):
    """File → Open Recent: filled from the settings each time it opens; `chosen` gives the path."""

    chosen = Signal(str)

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.aboutToShow.connect(self.fill)

    def fill(self) -> None:
        self.clear()
        for path in recent_files():
            action = self.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.chosen.emit(p))
        if not self.actions():
            self.addAction("No recent files").setEnabled(False)
        else:
            self.addSeparator()
            self.addAction("Clear Recent Files").triggered.connect(clear_recent_files)


def recent_files() -> list[str]:
    value = QSettings().value("recent_files", [])
    paths = [value] if isinstance(value, str) else list(value or [])
    return [p for p in paths if isinstance(p, str)]


def add_recent_file(path: str) -> None:
    paths = [path, *(p for p in recent_files() if p != path)][:MAX_RECENT]
    QSettings().setValue("recent_files", paths)


def clear_recent_files() -> None:
    QSettings().setValue("recent_files", [])


def about_text() -> str:
    import PySide6
    from PySide6.QtCore import qVersion

    lines = [f"<b>{APP_NAME}</b> {__version__}",
             "Inspect, convert, diff, export and check PyTorch checkpoints without running code "
             "from them.", "",
             f"Python {platform.python_version()}",
             f"Qt {qVersion()} (PySide6 {PySide6.__version__})"]
    torch = sys.modules.get("torch")  # shown only when already loaded; never imported for this
    if torch is not None:
        lines.append(f"PyTorch {getattr(torch, '__version__', '?')}")
    return "<br>".join(lines)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False

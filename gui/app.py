"""The desktop app: QApplication, main window, menus, drag-and-drop, recent files, geometry.

Nothing here imports torch: files open on a worker with the torch-free core readers.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QKeySequence,
    QPalette,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from gui.views.inspect import InspectView

APP_NAME = ORG_NAME = "Checkpoint Studio"
ICON_PATH = Path(__file__).resolve().parents[1] / "resources" / "icons" / "ckpt-studio.svg"
MAX_RECENT = 10
FILE_FILTER = ("Checkpoints (*.pt *.pth *.bin *.ckpt *.safetensors *.json *.onnx *.pt2 *.tar);;"
               "All files (*)")


def app_icon() -> QIcon:
    return QIcon(str(ICON_PATH)) if ICON_PATH.exists() else QIcon()


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.tabs = QTabWidget(documentMode=True, tabsClosable=True, movable=True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(self._update_title)
        self.stack = QStackedWidget()
        self.stack.addWidget(_empty_page())
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)
        self._build_menus()
        self._restore_geometry()

    # -- menus ---------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open…", "Ctrl+O", self.choose_files)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "&Close", "Ctrl+W",
                     lambda: self.close_tab(self.tabs.currentIndex()))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", "Ctrl+Q", self.close)
        edit_menu = self.menuBar().addMenu("&Edit")
        self._action(edit_menu, "&Filter Names", "Ctrl+F", self.focus_filter)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About Checkpoint Studio", None, self.show_about)

    def _action(self, menu: QMenu, text: str, shortcut: str | None,
                slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_files([p]))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("No recent files").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent Files").triggered.connect(
                lambda: QSettings().setValue("recent_files", []))

    # -- opening -------------------------------------------------------------------------------
    def choose_files(self) -> None:
        settings = QSettings()
        paths, _ = QFileDialog.getOpenFileNames(self, "Open checkpoint",
                                                str(settings.value("last_dir", "")), FILE_FILTER)
        if paths:
            settings.setValue("last_dir", str(Path(paths[0]).parent))
            self.open_files(paths)

    def open_files(self, paths: list[str]) -> list[InspectView]:
        """One file -> inspect; two files -> both as tabs for now (the diff view comes later)."""
        return [self.open_path(p) for p in paths]

    def open_path(self, path: str | Path) -> InspectView:
        path = str(Path(path).expanduser().resolve())
        for index in range(self.tabs.count()):
            view = self.tabs.widget(index)
            if isinstance(view, InspectView) and view.path == path:
                self.tabs.setCurrentIndex(index)
                return view
        view = InspectView(path)
        index = self.tabs.addTab(view, Path(path).name)
        self.tabs.setTabToolTip(index, path)
        self.tabs.setCurrentIndex(index)
        self.stack.setCurrentWidget(self.tabs)
        add_recent_file(path)
        return view

    def close_tab(self, index: int) -> None:
        view = self.tabs.widget(index)
        if view is None:
            return
        if isinstance(view, InspectView):
            view.shutdown()
        self.tabs.removeTab(index)
        view.deleteLater()
        if self.tabs.count() == 0:
            self.stack.setCurrentIndex(0)

    def views(self) -> list[InspectView]:
        return [w for i in range(self.tabs.count()) if isinstance(w := self.tabs.widget(i), InspectView)]

    def current_view(self) -> InspectView | None:
        view = self.tabs.currentWidget()
        return view if isinstance(view, InspectView) else None

    def focus_filter(self) -> None:
        view = self.current_view()
        if view is not None:
            view.focus_filter()

    def _update_title(self) -> None:
        view = self.current_view()
        self.setWindowTitle(f"{Path(view.path).name} — {APP_NAME}" if view else APP_NAME)

    # -- drag and drop -------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _local_paths(event.mimeData().urls()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _local_paths(event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = _local_paths(event.mimeData().urls())
        if paths:
            event.acceptProposedAction()
            self.open_files(paths)

    # -- window --------------------------------------------------------------------------------
    def show_about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", about_text())

    def _restore_geometry(self) -> None:
        geometry = QSettings().value("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)

    def closeEvent(self, event: QCloseEvent) -> None:
        QSettings().setValue("geometry", self.saveGeometry())
        for view in self.views():
            view.shutdown()
        super().closeEvent(event)


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


def recent_files() -> list[str]:
    value = QSettings().value("recent_files", [])
    paths = [value] if isinstance(value, str) else list(value or [])
    return [p for p in paths if isinstance(p, str)]


def add_recent_file(path: str) -> None:
    paths = [path, *(p for p in recent_files() if p != path)][:MAX_RECENT]
    QSettings().setValue("recent_files", paths)


def _local_paths(urls: list[QUrl]) -> list[str]:
    return [u.toLocalFile() for u in urls if u.isLocalFile() and u.toLocalFile()]


def _empty_page() -> QWidget:
    page = QWidget()
    icon = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
    icon.setPixmap(app_icon().pixmap(96, 96))
    title = QLabel("Drop a checkpoint here, or use File → Open… (Ctrl+O)",
                   alignment=Qt.AlignmentFlag.AlignCenter)
    font = title.font()
    font.setPointSizeF(font.pointSizeF() * 1.25)
    title.setFont(font)
    hint = QLabel("PyTorch .pt / .pth / .ckpt, safetensors (also sharded), TorchScript, .pt2, ONNX.\n"
                  "Files are read as data: nothing inside them is run.",
                  alignment=Qt.AlignmentFlag.AlignCenter)
    hint.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    layout = QVBoxLayout(page)
    layout.addStretch(1)
    for widget in (icon, title, hint):
        layout.addWidget(widget)
    layout.addStretch(1)
    return page


def create_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationVersion(__version__)
    app.setWindowIcon(app_icon())
    return app  # type: ignore[return-value]


def main(files: list[str]) -> int:
    """Open the main window (with `files`, if any) and run until it closes."""
    app = create_app()
    window = MainWindow()
    window.show()
    window.open_files(files)
    return app.exec()

"""The desktop app: QApplication, main window, tabs, drag-and-drop, geometry, `main()`.

The menus, toolbar, recent files and About text are built in gui/menus.py.

Nothing here imports torch: files open on a worker with the torch-free core readers.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFileOpenEvent,
    QIcon,
    QPalette,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from gui.gc_guard import collect_on_gui_thread
from gui.menus import APP_NAME, about_text, add_recent_file, build_menus
from gui.menus import recent_files as recent_files  # re-exported: callers know it as gui.app's
from gui.views.convert import ConvertPanel
from gui.views.diff import DiffView
from gui.views.inspect import InspectView

ORG_NAME = APP_NAME
ICON_PATH = Path(__file__).resolve().parents[1] / "resources" / "icons" / "ckpt-studio.svg"
# Panels written separately: mounted as tabs when their module exists (imported on first use, so
# they may import torch without slowing the start). key -> (module, class, tab title, shortcut)
OPTIONAL_PANELS = {"export": ("gui.views.export", "ExportPanel", "Export", "Ctrl+Shift+E"),
                   "checks": ("gui.views.checks", "ChecksPanel", "Checks", "Ctrl+Shift+K")}
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

    # -- menus (gui/menus.py) -------------------------------------------------------------------
    def _build_menus(self) -> None:
        actions = build_menus(self, OPTIONAL_PANELS)
        self.open_action, self.compare_action = actions.open, actions.compare
        self.convert_action, self.panel_actions = actions.convert, actions.panels
        self.recent_menu = actions.recent_menu

    def _fill_recent_menu(self) -> None:
        self.recent_menu.fill()

    # -- opening -------------------------------------------------------------------------------
    def choose_files(self) -> None:
        paths = self._ask_files("Open checkpoint")
        if paths:
            self.open_files(paths)

    def choose_folder(self) -> None:
        """Open a Hugging Face model folder (its weights, with its config beside them)."""
        settings = QSettings()
        start = str(settings.value("last_dir", ""))
        folder = QFileDialog.getExistingDirectory(self, "Open model folder", start)
        if folder:
            settings.setValue("last_dir", str(Path(folder).parent))
            self.open_path(folder)

    def choose_compare(self) -> None:
        """Pick two files (both at once, or A then B) and open the diff view."""
        paths = self._ask_files("Compare: choose two files (A and B)")
        if len(paths) == 1:
            paths += self._ask_files(f"Compare {Path(paths[0]).name} with…", single=True)
        if len(paths) == 2:
            self.open_diff(*paths)
        elif len(paths) > 2:
            QMessageBox.information(self, "Compare", "Choose two files to compare.")

    def _ask_files(self, title: str, single: bool = False) -> list[str]:
        settings = QSettings()
        folder = str(settings.value("last_dir", ""))
        if single:
            path, _ = QFileDialog.getOpenFileName(self, title, folder, FILE_FILTER)
            paths = [path] if path else []
        else:
            paths, _ = QFileDialog.getOpenFileNames(self, title, folder, FILE_FILTER)
        if paths:
            settings.setValue("last_dir", str(Path(paths[0]).parent))
        return paths

    def open_files(self, paths: list[str]) -> list[QWidget]:
        """Two files -> the diff view; otherwise one inspect view per file."""
        if len(paths) == 2:
            return [self.open_diff(*paths)]
        return [self.open_path(p) for p in paths]

    def open_path(self, path: str | Path) -> InspectView:
        path = str(Path(path).expanduser().resolve())
        found = self._find(lambda w: isinstance(w, InspectView) and w.path == path)
        if isinstance(found, InspectView):
            return found
        view = InspectView(path)
        self._add_tab(view, Path(path).name, path)
        add_recent_file(path)
        return view

    def open_diff(self, path_a: str | Path, path_b: str | Path) -> DiffView:
        a, b = (str(Path(p).expanduser().resolve()) for p in (path_a, path_b))
        found = self._find(lambda w: isinstance(w, DiffView) and (w.path_a, w.path_b) == (a, b))
        if isinstance(found, DiffView):
            return found
        view = DiffView(a, b)
        self._add_tab(view, view.title(), f"A: {a}\nB: {b}")
        view.title_changed.connect(lambda title, v=view: self._retitle(v, title))
        for path in (b, a):
            add_recent_file(path)
        return view

    def open_convert(self, paths: list[str] | None = None) -> ConvertPanel:
        """The Convert tab, for `paths` or else the file of the current inspect view."""
        current = self.current_view()
        panel = self._find(lambda w: isinstance(w, ConvertPanel))
        if not isinstance(panel, ConvertPanel):
            panel = ConvertPanel()
            self._add_tab(panel, "Convert", "Convert checkpoints (drop files here)")
        if paths:
            panel.set_sources(paths)
        elif current is not None and current.path not in panel.sources[:1]:
            panel.set_sources([current.path], current.checkpoint)
        return panel

    def convert_dropped(self, paths: list[str]) -> ConvertPanel:
        """Files dropped on the toolbar's Convert button: queued in the Convert tab, each converted
        with the options it shows."""
        panel = self._find(lambda w: isinstance(w, ConvertPanel))
        if not isinstance(panel, ConvertPanel):
            panel = self.open_convert()
        self.tabs.setCurrentWidget(panel)
        panel.convert_files(list(paths))
        return panel

    def open_panel(self, key: str) -> QWidget | None:
        """The tab of an optional panel (export, checks), created on first use."""
        module, cls_name, title, _shortcut = OPTIONAL_PANELS[key]
        current = self.current_view()
        found = self._find(lambda w: type(w).__name__ == cls_name)
        if found is not None:
            return found
        try:
            panel = getattr(importlib.import_module(module), cls_name)()
        except Exception as exc:  # a panel that fails to load must not take the window down
            box = QMessageBox(QMessageBox.Icon.Warning, title,
                              f"The {title} panel could not be loaded.", parent=self)
            box.setDetailedText(f"{type(exc).__name__}: {exc}")
            box.open()
            return None
        self._add_tab(panel, title, "")
        self._connect_panel(key, panel, current)
        return panel

    def _connect_panel(self, key: str, panel: QWidget, current: InspectView | None) -> None:
        """Export presets the open file's weights and sends its artefacts to the checks panel."""
        if key != "export":
            return
        if current is not None:
            panel.set_checkpoint(str(current.path))
        panel.artefacts_ready.connect(lambda paths: self._check_artefacts(paths, panel.check_options()))

    def _check_artefacts(self, paths: list[str], hf_options: dict[str, Any] | None) -> None:
        checks = self.open_panel("checks")
        if checks is not None:
            checks.add_artefacts(paths, hf_options)

    def _find(self, test: Callable[[QWidget], bool]) -> QWidget | None:
        """The first tab whose widget passes `test`, made current."""
        for index in range(self.tabs.count()):
            if test(widget := self.tabs.widget(index)):
                self.tabs.setCurrentIndex(index)
                return widget
        return None

    def _add_tab(self, widget: QWidget, title: str, tooltip: str) -> None:
        index = self.tabs.addTab(widget, title)
        self.tabs.setTabToolTip(index, tooltip)
        self.tabs.setCurrentIndex(index)
        self.stack.setCurrentWidget(self.tabs)

    def _retitle(self, widget: QWidget, title: str) -> None:
        index = self.tabs.indexOf(widget)
        if index >= 0:
            self.tabs.setTabText(index, title)
            self._update_title()

    def close_tab(self, index: int) -> None:
        view = self.tabs.widget(index)
        if view is None:
            return
        _shutdown(view)
        self.tabs.removeTab(index)
        view.deleteLater()
        if self.tabs.count() == 0:
            self.stack.setCurrentIndex(0)

    def views(self) -> list[InspectView]:
        return [w for i in range(self.tabs.count()) if isinstance(w := self.tabs.widget(i), InspectView)]

    def tab_widgets(self) -> list[QWidget]:
        return [self.tabs.widget(i) for i in range(self.tabs.count())]

    def current_view(self) -> InspectView | None:
        view = self.tabs.currentWidget()
        return view if isinstance(view, InspectView) else None

    def focus_filter(self) -> None:
        focus = getattr(self.tabs.currentWidget(), "focus_filter", None)
        if focus is not None:
            focus()

    def _update_title(self) -> None:
        widget = self.tabs.currentWidget()
        if isinstance(widget, InspectView):
            name = Path(widget.path).name
        elif isinstance(widget, DiffView):
            name = widget.title()
        else:
            name = self.tabs.tabText(self.tabs.currentIndex()) if widget is not None else ""
        self.setWindowTitle(f"{name} — {APP_NAME}" if name else APP_NAME)

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
        for widget in self.tab_widgets():
            _shutdown(widget)
        super().closeEvent(event)


def _shutdown(widget: QWidget) -> None:
    """Stop a tab's jobs before it closes (every panel with jobs has `shutdown()`)."""
    shutdown = getattr(widget, "shutdown", None)
    if callable(shutdown):
        shutdown()


def _local_paths(urls: list[QUrl]) -> list[str]:
    return [u.toLocalFile() for u in urls if u.isLocalFile() and u.toLocalFile()]


def _empty_page() -> QWidget:
    page = QWidget()
    icon = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
    icon.setPixmap(app_icon().pixmap(96, 96))
    title = QLabel("Drop a checkpoint or a model folder here, or use File → Open… (Ctrl+O)",
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
    collect_on_gui_thread()
    return app  # type: ignore[return-value]


class FileOpenRouter(QObject):
    """Opens the files the OS hands over as events: on macOS a double-click or "Open With" on a
    file reaches a running (or starting) app as a QFileOpenEvent, not as a command-line argument."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.FileOpen and isinstance(event, QFileOpenEvent) and event.file():
            self.window.open_path(event.file())
            self.window.raise_()
            return True
        return super().eventFilter(watched, event)


def main(files: list[str]) -> int:
    """Open the main window (with `files`, if any) and run until it closes."""
    if not has_screen():
        print("The desktop app needs a graphical session, and none was found (no DISPLAY or "
              "WAYLAND_DISPLAY). Use the commands instead, e.g. `ckpt-studio inspect FILE`; see "
              "`ckpt-studio --help`.", file=sys.stderr)
        return 2
    app = create_app()
    window = MainWindow()
    app.installEventFilter(FileOpenRouter(window))
    window.show()
    window.open_files(files)
    shot = os.environ.get("CKPT_STUDIO_SCREENSHOT")
    if shot:  # for installer checks: prove the (frozen) window draws, then quit
        QTimer.singleShot(1500, lambda: app.exit(0 if window.grab().save(shot) else 1))
    return app.exec()


def has_screen(environ: Mapping[str, str] | None = None) -> bool:
    """Whether Qt can open a window: always on Windows/macOS; on Linux, a display or a chosen
    platform plugin (QT_QPA_PLATFORM=offscreen in tests) — otherwise Qt aborts the process."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return True
    return any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))

"""What the frozen app leaves out: modules it never imports and files it never opens.

Used by `checkpoint-studio.spec` (module excludes, TOC filtering) and by `build.py` (stripping
symbols from torch's shared libraries after PyInstaller). Every rule here is checked by the frozen
`--self-test` and the offscreen GUI start in `tests/packaging/test_build.py`: a rule that drops
something needed fails those, not a user.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

# Python modules never imported by the app (dev tools, test suites, Qt modules no view uses).
EXCLUDED_MODULES = [
    # development and test tooling that the venv has but the app never imports
    "pytest", "_pytest", "hypothesis", "importlinter", "grimp", "PyInstaller", "pip",
    "IPython", "jupyter_client", "notebook", "tkinter", "_tkinter", "matplotlib",
    # torch's own test suite and optional integrations (each imported only by tests/plugins)
    "torch.utils.tensorboard", "tensorboard", "onnx.backend.test",
    # Qt modules no view uses (pyqtgraph needs QtOpenGL; it imports QtTest inside try/except)
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtQuickControls2",
    "PySide6.QtTest", "PySide6.QtNetwork",
    "PySide6.QtSql", "PySide6.QtDesigner", "PySide6.QtUiTools", "PySide6.QtHelp", "PySide6.QtPdf",
    "PySide6.QtPdfWidgets", "PySide6.QtDBus", "PySide6.QtConcurrent", "PySide6.QtXml",
    "PySide6.Qt3DCore", "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets",
    "PySide6.QtMultimedia", "PySide6.QtCharts", "PySide6.QtDataVisualization",
    "pyqtgraph.opengl", "pyqtgraph.examples", "pyqtgraph.jupyter",
]

# Collected files (paths inside the bundle, '/' separated, fnmatch: '*' crosses '/').
DROPPED_FILES = [
    "torch/bin/*", "torch/test/*",  # C++ test executables (~130 MB) and protoc
    "torch/include/*", "torch/share/*", "*.a", "*.lib", "*.pyi", "*.h", "*.hpp", "*.cuh",
    "torch/lib/libjitbackend_test.so", "torch/lib/libtorchbind_test.so",
    "torch/lib/libbackend_with_compiler.so", "torch/lib/libaoti_custom_ops.so",
    "torch/testing/_internal/*",
    # torch's hook ships every .py beside its bytecode in the PYZ ("pyz+py"): keep the sources
    # torch reads at run time (KEPT_FILES) and drop the other ~35 MB of duplicates
    "torch/*/*.py",
    "onnx/backend/test/*",  # onnx's conformance test models (~18 MB)
    "*/__pycache__/*",  # .pyc duplicates of modules that are already in the PYZ archive
    # Qt: translations (the app is English), plugins for devices a desktop app never drives
    "PySide6/Qt/translations/*", "PySide6/Qt/qml/*",
    "PySide6/Qt/plugins/imageformats/libqpdf*",  # would pull in QtPdf
    # image formats the app never reads or writes (it needs svg, png (built in), ico, jpeg)
    "PySide6/Qt/plugins/imageformats/libqtiff.so", "PySide6/Qt/plugins/imageformats/libqwebp.so",
    "PySide6/Qt/plugins/imageformats/libqtga.so", "PySide6/Qt/plugins/imageformats/libqwbmp.so",
    "PySide6/Qt/plugins/imageformats/libqgif.so", "PySide6/Qt/plugins/imageformats/libqicns.so",
    "PySide6/Qt/plugins/platforms/libqeglfs.so", "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so", "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so", "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/generic/*",  # evdev/tuio input for kiosk setups
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",  # would pull in a private GTK 3 stack
    "PySide6/Qt/plugins/qmltooling/*", "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/sqldrivers/*", "PySide6/Qt/plugins/wayland-graphics-integration-server/*",
]
# Exceptions to DROPPED_FILES.
KEPT_FILES = [
    "torch/bin/torch_shm_manager",  # `import torch` checks that it exists
    "torch/*config*.py",  # torch.utils._config_module reads each config module's source
    "torch/nn/*", "torch/jit/*",  # TorchScript's `script` compiles torch.nn from source
    "torch/ao/*",  # ...and tracing a dynamically quantized (int8) model compiles torch.ao's
]

# Libraries whose symbol tables are stripped after the build (~110 MB). Only these: libraries
# that auditwheel patched (numpy's, in *.libs/) break when stripped ("ELF load command
# address/offset not page-aligned"), and Qt's come stripped already.
STRIPPED_LIBRARIES = ["torch/lib/*.so*", "libpython3*.so*", "python3*/lib-dynload/*.so"]
# Folders whose libraries are deleted when nothing left in the bundle needs them any more.
PRUNED_DIRS = [".", "PySide6/Qt/lib"]
# Libraries the bootloader or Python load by name (dlopen/ctypes): never pruned.
LOADED_BY_NAME = ["libpython*"]


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def dropped(dest: str) -> bool:
    """True when a collected file (its path inside the bundle) is left out."""
    dest = dest.replace("\\", "/")
    return _matches(dest, DROPPED_FILES) and not _matches(dest, KEPT_FILES)


def filter_toc(toc: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """A PyInstaller TOC (dest, source, typecode) without the dropped files."""
    return [entry for entry in toc if not dropped(entry[0])]


def strip_libraries(internal: Path) -> int:
    """Strip symbol tables (`strip --strip-unneeded`) from STRIPPED_LIBRARIES; bytes saved."""
    strip = shutil.which("strip")
    if strip is None:
        return 0
    saved = 0
    for path in _files(internal, STRIPPED_LIBRARIES):
        before = path.stat().st_size
        subprocess.run([strip, "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


def prune_orphans(internal: Path) -> list[str]:
    """Delete the libraries in PRUNED_DIRS that nothing left in the bundle needs (the GTK stack of a
    dropped Qt plugin, say); their paths. Needs binutils' `objdump`, as PyInstaller does."""
    candidates = {p.name: p for d in PRUNED_DIRS for p in _files(internal / d, ["*.so*"], False)
                  if not _matches(p.name, LOADED_BY_NAME)}
    roots = [p for p in _files(internal, ["*.so", "*.so.*"]) if p not in candidates.values()]
    roots += [p for p in internal.parent.iterdir() if p.is_file() and os.access(p, os.X_OK)]
    kept: set[str] = set()
    todo = list(roots)
    while todo:
        for name in needed(todo.pop()):
            if name in candidates and name not in kept:
                kept.add(name)
                todo.append(candidates[name])
    orphans = sorted(set(candidates) - kept)
    for name in orphans:
        candidates[name].unlink()
    return [candidates[name].relative_to(internal).as_posix() for name in orphans]


def needed(path: Path) -> list[str]:
    """The DT_NEEDED names of an ELF file ([] for anything else)."""
    out = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def _files(folder: Path, patterns: list[str], recursive: bool = True) -> list[Path]:
    glob = folder.rglob if recursive else folder.glob
    found = {p for pattern in patterns for p in glob(pattern)}
    return sorted(p for p in found if p.is_file() and not p.is_symlink())

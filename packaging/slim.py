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
    # standard-library and helper modules nothing in the app imports (checked by the self-test)
    "sqlite3", "_sqlite3", "readline", "setuptools", "pkg_resources", "distutils", "fsspec",
    "numpy.f2py",
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

# Libraries of the desktop itself, left to the OS as AppImage's excludelist does: a bundled copy
# of glibc, libstdc++, fontconfig, glib, dbus or X11/xcb/GL clashes with the system's config files
# and GPU drivers. Each soname maps to the Debian package that provides it; the .deb depends on
# the packages of the names the bundle needs (build.py), and the build test fails on a needed name
# that is neither bundled nor listed here.
_GLIBC = "libc6 (>= 2.36)"  # the build machine's glibc: the newest GLIBC_ symbol version used
OS_LIBRARIES = {
    "ld-linux-x86-64.so.2": _GLIBC, "ld-linux-aarch64.so.1": _GLIBC, "libc.so.6": _GLIBC,
    "libdl.so.2": _GLIBC, "libm.so.6": _GLIBC, "libpthread.so.0": _GLIBC, "librt.so.1": _GLIBC,
    "libutil.so.1": _GLIBC, "libresolv.so.2": _GLIBC,
    "libstdc++.so.6": "libstdc++6 (>= 12)", "libgcc_s.so.1": "libgcc-s1", "libz.so.1": "zlib1g",
    "libuuid.so.1": "libuuid1", "libexpat.so.1": "libexpat1",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0", "libgio-2.0.so.0": "libglib2.0-0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libharfbuzz.so.0": "libharfbuzz0b", "libdbus-1.so.3": "libdbus-1-3",
    "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0", "libX11.so.6": "libx11-6", "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libwayland-client.so.0": "libwayland-client0", "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1", "libxcb.so.1": "libxcb1",
    **{f"libxcb-{name}.so.{major}": f"libxcb-{name}{major}" for name, major in [
        ("cursor", 0), ("glx", 0), ("icccm", 4), ("image", 0), ("keysyms", 1), ("randr", 0),
        ("render", 0), ("render-util", 0), ("shape", 0), ("shm", 0), ("sync", 1), ("util", 1),
        ("xfixes", 0), ("xkb", 1), ("xinerama", 0), ("xinput", 0)]},
}

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
    if "/" not in dest and dest in OS_LIBRARIES:
        return True
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


def os_needs(internal: Path) -> tuple[set[str], set[str]]:
    """(names the bundle needs from the OS that OS_LIBRARIES covers, names nothing provides)."""
    bundled = {p.name for p in internal.rglob("*.so*")}
    wanted = {name for path in _files(internal, ["*.so", "*.so.*"]) for name in needed(path)}
    wanted |= {name for path in internal.parent.iterdir() if path.is_file() for name in needed(path)}
    from_os = wanted - bundled
    return from_os & OS_LIBRARIES.keys(), from_os - OS_LIBRARIES.keys()


def deb_depends(internal: Path) -> list[str]:
    """The Debian packages that provide what the bundle needs from the OS."""
    covered, _ = os_needs(internal)
    return sorted({OS_LIBRARIES[name] for name in covered})


def needed(path: Path) -> list[str]:
    """The DT_NEEDED names of an ELF file ([] for anything else)."""
    out = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip().startswith("NEEDED")]


def _files(folder: Path, patterns: list[str], recursive: bool = True) -> list[Path]:
    glob = folder.rglob if recursive else folder.glob
    found = {p for pattern in patterns for p in glob(pattern)}
    return sorted(p for p in found if p.is_file() and not p.is_symlink())

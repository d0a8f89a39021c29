"""The build environment: a virtual environment holding exactly the declared runtime dependencies.

`installer-requirements.txt` pins what the installer carries; `build-requirements.txt` the freezing
tools. `ensure_venv` creates the environment (or reuses it while both files are unchanged) and
`build.py` runs itself again with its interpreter, so PyInstaller can only find declared packages.
`undeclared_modules` is the second fence, for builds from another environment (`--current-env`):
the top-level modules of every installed distribution that is neither declared nor a build tool.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNTIME_LOCK = HERE / "installer-requirements.txt"
BUILD_LOCK = HERE / "build-requirements.txt"
PROJECT = "checkpoint-studio"
# Distributions the build needs but the bundle never carries (slim.EXCLUDED_MODULES leaves them out),
# except PyInstaller's bootloader and its run-time hook helpers (`_pyi_rth_utils`), part of every bundle.
BUILD_TOOLS = {"pip", "pyinstaller", "pyinstaller-hooks-contrib", "altgraph"}
BUNDLED_TOOLS = {"pyinstaller"}
MARKER = "checkpoint-studio-build-env.txt"
# Variables that would let the outer environment's packages into the build environment.
LEAKY_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = RUNTIME_LOCK) -> dict[str, str]:
    """{normalized name: version} of a `name==version[; marker]` requirements file (the first pin of
    a name; a pin for another platform differs only in its local version, `+cpu`)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].split(";", 1)[0].strip()
        if requirement:
            name, _, version = requirement.partition("==")
            pins.setdefault(normalize(name), version.strip())
    return pins


@functools.cache
def declared() -> frozenset[str]:
    """Every distribution the bundle may hold: the pinned runtime set, the project, PyInstaller's
    run-time part."""
    return frozenset(read_lock()) | {PROJECT} | BUNDLED_TOOLS


def undeclared_metadata(dest: str) -> bool:
    """True for a collected file in the metadata folder (`NAME-VERSION.dist-info/`) of a
    distribution that is not declared (a hook's copy_metadata can bring one in)."""
    top = dest.replace("\\", "/").split("/", 1)[0]
    if not top.endswith((".dist-info", ".egg-info")):
        return False
    return normalize(top.split("-", 1)[0].removesuffix(".egg")) not in declared()


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def lock_digest() -> str:
    digest = hashlib.sha256()
    for path in (RUNTIME_LOCK, BUILD_LOCK):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def clean_env() -> dict[str, str]:
    """The current environment without the variables that add packages to an interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def ensure_venv(venv: Path) -> Path:
    """The build environment's interpreter; (re)creates `venv` unless it matches the lock files.

    pip installs from its cache and the configured local wheels when they hold the pinned files, so
    a rebuild costs the unpacking (about a minute for torch), not a download."""
    marker = venv / MARKER
    digest = lock_digest()
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest:
        return venv_python(venv)
    print(f"creating the build environment {venv} from {RUNTIME_LOCK.name} and {BUILD_LOCK.name}",
          flush=True)
    env = clean_env()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=env)
    python = str(venv_python(venv))
    # --no-compile: PyInstaller compiles what it bundles itself; pip's .pyc of torch cost CPU minutes
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "-r", str(RUNTIME_LOCK), "-r", str(BUILD_LOCK)], check=True, env=env)
    # --no-deps installs exactly the pins; pip check proves they are a closed set
    subprocess.run([python, "-m", "pip", "check"], check=True, env=env)
    marker.write_text(digest + "\n", encoding="utf-8")
    return venv_python(venv)


def undeclared_modules() -> list[str]:
    """Top-level modules of the running environment that only undeclared distributions provide."""
    allowed = declared() | BUILD_TOOLS
    providers: dict[str, set[str]] = {}
    for module, names in importlib.metadata.packages_distributions().items():
        providers.setdefault(module, set()).update(normalize(name) for name in names)
    # a module shared with a declared distribution (a namespace such as PySide6) stays importable;
    # the bill of materials check catches what such a package would add
    return sorted(module for module, names in providers.items()
                  if module.isidentifier() and not names & allowed)

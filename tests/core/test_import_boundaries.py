"""core stays Qt-free and opens/inspects files without importing torch (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.models import FixtureFiles

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, pkgutil, sys
import core
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint
names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
for name in names:
    importlib.import_module(name)
after_import = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PySide6", "pyqtgraph"))
counts = {}
for path in json.loads(sys.argv[1]):
    counts[path] = inspect_checkpoint(open_checkpoint(path)).totals.tensors
after_open = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PySide6", "pyqtgraph"))
print(json.dumps({"modules": names, "after_import": after_import, "after_open": after_open,
                  "counts": counts}))
"""


def test_core_imports_and_opening_pull_in_neither_torch_nor_qt(files: FixtureFiles) -> None:
    paths = [str(p) for p in files.paths.values()]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(paths)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "core.formats.pickle_vm" in report["modules"]
    assert report["after_import"] == []
    assert report["after_open"] == []
    assert all(count > 0 for count in report["counts"].values()), report["counts"]


def test_the_cli_contract_names_every_other_core_module() -> None:
    """The import-linter contract "no other core module imports core.cli" lists its sources by
    hand; a new core module must join the list, or the contract would not cover it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"]
                    if c["forbidden_modules"] == ["core.cli"])
    top_level = {f"core.{p.stem}" for p in (ROOT / "core").iterdir()
                 if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem != "__init__"}
    assert set(contract["source_modules"]) == top_level - {"core.cli"}

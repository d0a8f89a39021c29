"""The installer's declared environment and its bill of materials (fast: no build).

The build freezes from a virtual environment holding exactly packaging/installer-requirements.txt;
these tests check that file against pyproject.toml, and the two fences against undeclared packages
(the derived PyInstaller excludes and the bill of materials) against the packages of this very
environment. The builds themselves are checked in test_build.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))
import bom  # noqa: E402
import buildenv  # noqa: E402

INSTALLER_EXTRAS = ("torch", "onnx", "gui", "gguf")  # what installer-requirements.txt says it carries


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = list(project["dependencies"])
    for extra in INSTALLER_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def test_lock_pins_every_declared_runtime_dependency_within_its_range() -> None:
    pins = buildenv.read_lock()
    for requirement in declared_requirements():
        name = buildenv.normalize(requirement.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_lock_pins_exact_versions_and_leaves_out_the_build_tools_and_hf() -> None:
    pins = buildenv.read_lock()
    assert all(version and "*" not in version for version in pins.values())
    assert not pins.keys() & buildenv.BUILD_TOOLS
    # transformers is not carried yet: when it is, it comes in through this file
    assert "transformers" not in pins
    build_pins = buildenv.read_lock(buildenv.BUILD_LOCK)
    assert buildenv.BUILD_TOOLS - {"pip"} <= build_pins.keys()


def test_undeclared_modules_cover_this_environment_s_extra_packages() -> None:
    """This test environment has pytest (never declared) and the app's declared packages."""
    modules = buildenv.undeclared_modules()
    assert "_pytest" in modules and "pytest" in modules
    for kept in ("numpy", "safetensors", "core", "PyInstaller"):
        assert kept not in modules
    if importlib.util.find_spec("transformers") is not None:
        assert "transformers" in modules


def test_clean_env_drops_what_adds_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = buildenv.clean_env()
    assert "PYTHONPATH" not in env and env["PYTHONNOUSERSITE"] == "1"


def test_bill_of_materials_attributes_each_file(tmp_path: Path) -> None:
    import _pytest
    import numpy

    manifest = tmp_path / "manifest.json"
    numpy_init, pytest_init = Path(numpy.__file__), Path(_pytest.__file__)
    bom.write_manifest(manifest, [("numpy", str(numpy_init), "PYMODULE"),
                                  ("json", str(Path(json.__file__)), "PYMODULE"),
                                  ("core", str(ROOT / "core" / "__init__.py"), "PYMODULE"),
                                  ("_pytest", str(pytest_init), "PYMODULE")], [], [])
    parts = {part.name: part for part in bom.bill_of_materials(manifest, None, None, ROOT)}
    assert set(parts) == {"numpy", bom.PYTHON, buildenv.PROJECT, "pytest"}
    assert parts["numpy"].version == numpy.__version__ and parts["numpy"].declared
    assert parts["numpy"].size == numpy_init.stat().st_size and parts["numpy"].files == 1
    assert parts["numpy"].licence not in ("", "not stated")
    assert not parts["pytest"].declared and bom.undeclared(list(parts.values())) == ["pytest"]
    out = tmp_path / "bom.json"
    bom.write_json(list(parts.values()), out, folder_size=123)
    written = json.loads(out.read_text())
    assert written["folder_size"] == 123
    assert {c["name"] for c in written["components"]} == set(parts)


def test_metadata_of_undeclared_distributions_is_dropped() -> None:
    assert buildenv.undeclared_metadata("hypothesis-6.1.0.dist-info/METADATA")
    assert buildenv.undeclared_metadata("scikit_learn-1.9.1.dist-info/RECORD")
    assert not buildenv.undeclared_metadata("PySide6_Essentials-6.12.0.dist-info/METADATA")
    assert not buildenv.undeclared_metadata("numpy-2.4.6.dist-info/LICENSE.txt")
    assert not buildenv.undeclared_metadata("torch/lib/libtorch_cpu.so")

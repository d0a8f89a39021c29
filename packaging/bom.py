"""The bill of materials: which distribution each bundled file came from, with version, size, licence.

The spec writes PyInstaller's table of contents (every module, library and data file with the path it
was collected from) to a manifest; `bill_of_materials` attributes each source path to the installed
distribution whose RECORD lists it, to the Python runtime, to the project, or to the OS. Sizes are
what the file takes in the bundle: its size in the folder after stripping and pruning, or, for a
module in the PYZ archive, its compressed length there (the source file's size before a PYZ exists).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path

import buildenv

PYTHON = "Python"
OS_FILES = "(operating system)"
UNOWNED = "(site-packages file no distribution lists)"


@dataclass
class Component:
    name: str
    version: str
    licence: str
    size: int = 0
    files: int = 0
    declared: bool = True
    samples: list[str] = field(default_factory=list)


def write_manifest(path: Path, pure: list, binaries: list, datas: list) -> None:
    """Called by the spec: PyInstaller's TOC entries (dest, source, typecode) as JSON."""
    # a SYMLINK entry points at another entry of the bundle, which is counted itself
    entries = [[dest, source, kind] for toc in (pure, binaries, datas) for dest, source, kind in toc
               if source and kind != "SYMLINK"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")


def licence_of(dist: importlib.metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return expression
    text = (meta.get("License") or "").strip()
    if text and len(text) <= 60 and "\n" not in text:
        return text
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::") and c.count("::") >= 2]
    return "; ".join(classifiers) or ("see its licence file" if text else "not stated")


def _owner_index() -> dict[str, importlib.metadata.Distribution]:
    """{real path of every installed file: its distribution}."""
    owners: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            owners.setdefault(os.path.realpath(dist.locate_file(file)), dist)
    return owners


def _pyz_sizes(pyz: Path | None) -> dict[str, int]:
    if pyz is None or not pyz.is_file():
        return {}
    from PyInstaller.archive.readers import ZlibArchiveReader

    return {name: entry[-1] for name, entry in ZlibArchiveReader(str(pyz)).toc.items()}


def _classify(source: str, owners: dict, project_root: Path) -> tuple[str, str, str, bool]:
    """(name, version, licence, declared) of the component a collected file came from."""
    real = os.path.realpath(source)
    dist = owners.get(real)
    if dist is not None:
        name = buildenv.normalize(dist.metadata["Name"])
        return name, dist.version, licence_of(dist), name in buildenv.declared()
    if real.startswith(str(project_root) + os.sep):
        return buildenv.PROJECT, _project_version(project_root), "Apache-2.0", True
    site_dirs = {os.path.realpath(sysconfig.get_path(key)) for key in ("purelib", "platlib")}
    if any(real.startswith(d + os.sep) for d in site_dirs):
        return UNOWNED, "", "unknown", False
    python_dirs = {os.path.realpath(sysconfig.get_path(key)) for key in ("stdlib", "platstdlib")}
    python_dirs.add(os.path.realpath(sys.base_prefix))
    if any(real.startswith(d + os.sep) for d in python_dirs):
        return PYTHON, sys.version.split()[0], "PSF-2.0", True
    return OS_FILES, "", "see each Debian package's copyright", True


def _project_version(root: Path) -> str:
    text = (root / "core" / "__init__.py").read_text(encoding="utf-8")
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


def bill_of_materials(manifest: Path, internal: Path | None, pyz: Path | None,
                      project_root: Path) -> list[Component]:
    """The bundle's components, largest first. `internal`: the built folder's _internal (sizes after
    stripping; files pruned after PyInstaller drop out), or None to size the collected sources."""
    owners = _owner_index()
    pyz_sizes = _pyz_sizes(pyz)
    components: dict[str, Component] = {}
    for dest, source, kind in json.loads(manifest.read_text(encoding="utf-8")):
        if kind == "PYMODULE":
            size = pyz_sizes.get(dest, os.path.getsize(source) if os.path.isfile(source) else 0)
        elif internal is not None:
            path = internal / dest
            if not path.is_file() or path.is_symlink():
                continue  # pruned after PyInstaller, or a link to a file counted elsewhere
            size = path.stat().st_size
        else:
            size = os.path.getsize(source) if os.path.isfile(source) else 0
        name, version, licence, declared = _classify(source, owners, project_root)
        part = components.setdefault(name, Component(name, version, licence, declared=declared))
        part.size += size
        part.files += 1
        if name in (OS_FILES, UNOWNED) and len(part.samples) < 20:
            part.samples.append(dest)
    return sorted(components.values(), key=lambda c: (-c.size, c.name))


def undeclared(components: list[Component]) -> list[str]:
    return [c.name for c in components if not c.declared]


def write_json(components: list[Component], path: Path, folder_size: int | None) -> None:
    data = {"folder_size": folder_size,
            "components": [{k: v for k, v in asdict(c).items() if v != [] or k != "samples"}
                           for c in components]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def summary(components: list[Component]) -> str:
    lines = [f"bill of materials: {len(components)} components"]
    for part in components:
        flag = "" if part.declared else "  UNDECLARED"
        lines.append(f"  {part.size / 2**20:8.1f} MiB  {part.name} {part.version}  [{part.licence}]"
                     f"  {part.files} files{flag}")
    return "\n".join(lines)

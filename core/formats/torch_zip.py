"""Reader for torch.save zip checkpoints (PyTorch >= 1.6): `<folder>/data.pkl` + `<folder>/data/<key>`.

The folder is whatever torch named it (the file's stem, "archive", ...): like torch, we take it from
the first entry. Only the zip directory and data.pkl are read; tensors stay in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.dtypes import itemsize
from core.errors import CorruptFile
from core.formats import pickle_vm
from core.formats.pickle_ops import brief
from core.formats.pickle_vm import StorageType
from core.formats.zip_archive import (
    ZipArchive,
    first_entry_name,
    is_zip,
    open_archive,
    read_byteorder,
    read_version,
)
from core.model import Checkpoint, Storage

FORMAT = "torch-zip"
_BAD_ID = "A tensor in the file refers to its data in a way torch does not write; it is damaged."


def sniff(path: Path, head: bytes) -> bool:
    """A zip with `<folder>/data.pkl`, and not TorchScript (code/, constants.pkl) or .pt2."""
    if not is_zip(head):
        return False
    try:
        archive = open_archive(path)
    except CorruptFile:
        return first_entry_name(head).endswith("/data.pkl")  # a damaged checkpoint: open() explains
    names = archive.names()
    return (archive.has("data.pkl") and not archive.has("constants.pkl")
            and not archive.has("archive_format")
            and not any(n.lower().startswith("code/") for n in names))


def open(path: Path) -> Checkpoint:  # noqa: A001 - the reader interface
    """Read the directory and data.pkl; build tensor metadata without reading tensor data."""
    from core.layout import build_sections

    archive = open_archive(path)
    tree, findings, info = load_tree(archive)
    sections, weights = build_sections(tree)
    return Checkpoint(path, FORMAT, sections, weights, info, findings)


def load_tree(archive: ZipArchive, pickle_name: str = "data.pkl") -> tuple[Any, list, dict]:
    """Unpickle `<folder>/<pickle_name>` as torch.load does: (value, findings, metadata)."""
    outside = archive.outside_folder()
    if outside:
        raise CorruptFile("The file is damaged or incomplete: it has entries outside its "
                          "checkpoint folder.", f"{outside[0]!r} is not under {archive.folder}/")
    version = read_version(archive)
    byteorder = read_byteorder(archive)
    storages: dict[str, Storage] = {}
    devices: set[str] = set()

    def persistent_load(pid: Any) -> Storage:
        key, dtype, numel, location = parse_storage_id(pid)
        devices.add(location)
        if key not in storages:  # torch reuses the first storage loaded under a key
            storages[key] = archive.storage(f"data/{key}", dtype, numel * itemsize(dtype),
                                            byteorder)
        return storages[key]

    where = f"{archive.folder}/{pickle_name}"
    result = pickle_vm.load(archive.read(pickle_name), where=where,
                            persistent_load=persistent_load)
    info = {"archive_folder": archive.folder, "format_version": version, "byteorder": byteorder,
            "pickle_protocol": result.protocol, "storage_count": len(storages),
            "devices": sorted(devices)}
    return result.value, result.findings, info


def parse_storage_id(pid: Any) -> tuple[str, str, int, str]:
    """('storage', storage_type, key, location, numel) -> (key, dtype, numel, location)."""
    if not isinstance(pid, tuple) or len(pid) != 5 or _ascii(pid[0]) != "storage":
        raise CorruptFile(_BAD_ID, f"persistent id {brief(pid)}")
    _, storage_type, key, location, numel = pid
    if not isinstance(storage_type, StorageType):
        raise CorruptFile(_BAD_ID, f"storage type {brief(storage_type)}")
    if type(key) not in (str, int) or type(numel) is not int or numel < 0:
        raise CorruptFile(_BAD_ID, f"key {brief(key)}, size {brief(numel)}")
    return str(key), storage_type.dtype, numel, _ascii(location)


def _ascii(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else brief(value)


# older names, still imported by torchscript.py / pt2.py

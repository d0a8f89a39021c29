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
from core.formats.pickle_vm import StorageType
from core.formats.zip_archive import ZipArchive, is_zip, open_archive
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
        return _first_entry(head).endswith("/data.pkl")  # a damaged checkpoint: open() explains
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
    version = _version(archive)
    byteorder = _byteorder(archive)
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
        raise CorruptFile(_BAD_ID, f"persistent id {pid!r:.200}")
    _, storage_type, key, location, numel = pid
    if not isinstance(storage_type, StorageType):
        raise CorruptFile(_BAD_ID, f"storage type {storage_type!r:.100}")
    if type(key) not in (str, int) or type(numel) is not int or numel < 0:
        raise CorruptFile(_BAD_ID, f"key {key!r:.100}, size {numel!r:.100}")
    return str(key), storage_type.dtype, numel, _ascii(location)


def _ascii(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else repr(value)[:100]


def _version(archive: ZipArchive) -> int:
    name = ".data/version" if archive.has(".data/version") else "version"
    if not archive.has(name):
        raise CorruptFile("The file is damaged or incomplete: its version record is missing.",
                          f"no {archive.folder}/version")
    raw = archive.read(name, limit=64)
    try:
        return int(raw.decode("ascii").strip())
    except ValueError:  # includes UnicodeDecodeError
        raise CorruptFile("The file is damaged: its version record is not a number.",
                          repr(raw)) from None


def _byteorder(archive: ZipArchive) -> str:
    if not archive.has("byteorder"):
        return "little"  # torch's default for files without a byteorder mark
    raw = archive.read("byteorder", limit=16)
    if raw not in (b"little", b"big"):
        raise CorruptFile("The file is damaged: it names an unknown byte order.", repr(raw))
    return raw.decode()


def _first_entry(head: bytes) -> str:
    if len(head) < 30:
        return ""
    name_len = int.from_bytes(head[26:28], "little")
    return head[30:30 + name_len].decode("utf-8", "replace").lower()

"""Reader for torch.save zip checkpoints (PyTorch >= 1.6): `<folder>/data.pkl` + `<folder>/data/<key>`.

The folder is whatever torch named it (the file's stem, "archive", ...): like torch, we take it from
the first entry. Only the zip directory and data.pkl are read; tensors stay in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.dtypes import itemsize
from core.errors import CheckpointError, CorruptFile, UnsafeContent
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
_TWO_NAMES = ("The file names one piece of tensor data in two ways that torch reads as two separate "
              "copies; this app cannot show that exactly, so the file was not opened.")


def sniff(path: Path, head: bytes) -> bool:
    """A zip with `<folder>/data.pkl`, and not TorchScript (code/, constants.pkl) or .pt2."""
    if not is_zip(head):
        return False
    try:
        archive = open_archive(path)
    except CorruptFile:
        return first_entry_name(head).endswith("/data.pkl")  # a damaged checkpoint: open() explains
    # torch.load reads any zip without constants.pkl (its TorchScript test) as data.pkl + data/
    return (archive.has("data.pkl") and not archive.has("constants.pkl")
            and not archive.has("archive_format"))


def open(path: Path) -> Checkpoint:  # noqa: A001 - the reader interface
    """Read the directory and data.pkl; build tensor metadata without reading tensor data."""
    from core.layout import build_sections

    try:
        archive = open_archive(path)
        _check_layout(archive)
    except CorruptFile as error:  # damaged: still name what its pickles would run
        raise name_payloads(path, error) from None
    tree, findings, info = load_tree(archive)  # its pickle errors name payloads seen before them
    sections, weights = build_sections(tree)
    return Checkpoint(path, FORMAT, sections, weights, info, findings)


def load_tree(archive: ZipArchive, pickle_name: str = "data.pkl") -> tuple[Any, list, dict]:
    """Unpickle `<folder>/<pickle_name>` as torch.load does: (value, findings, metadata)."""
    version, byteorder = _check_layout(archive)
    storages: dict[Any, Storage] = {}  # torch's loaded_storages: by the raw key (0 is not "0")
    records: dict[str, Any] = {}  # record -> the raw key that named it first
    devices: set[str] = set()

    def persistent_load(pid: Any) -> Storage:
        key, dtype, numel, location = storage_id(pid)
        devices.add(location)
        if key in storages:  # torch reuses the first storage loaded under a key
            return storages[key]
        storage = archive.storage(f"data/{key}", dtype, numel * itemsize(dtype), byteorder)
        if storage.nbytes:  # like torch, an empty storage is made anew each time, not kept
            if type(records.setdefault(storage.key, key)) is not type(key):
                raise CorruptFile(_TWO_NAMES, f"storage keys {records[storage.key]!r}, {key!r}")
            storages[key] = storage
        return storage

    where = f"{archive.folder}/{pickle_name}"
    result = pickle_vm.load(archive.read(pickle_name), where=where,
                            persistent_load=persistent_load)
    info = {"archive_folder": archive.folder, "format_version": version, "byteorder": byteorder,
            "pickle_protocol": result.protocol, "storage_count": len(storages),
            "devices": sorted(devices)}
    return result.value, result.findings, info


def parse_storage_id(pid: Any) -> tuple[str, str, int, str]:
    """('storage', storage_type, key, location, numel) -> (key, dtype, numel, location)."""
    key, dtype, numel, location = storage_id(pid)
    return str(key), dtype, numel, location


def storage_id(pid: Any) -> tuple[str | int, str, int, str]:
    """Like `parse_storage_id`, with the key as the file holds it (a str or an int)."""
    if not isinstance(pid, tuple) or len(pid) != 5 or _ascii(pid[0]) != "storage":
        raise CorruptFile(_BAD_ID, f"persistent id {brief(pid)}")
    _, storage_type, key, location, numel = pid
    if not isinstance(storage_type, StorageType):
        raise CorruptFile(_BAD_ID, f"storage type {brief(storage_type)}")
    if type(key) not in (str, int) or type(numel) is not int or numel < 0:
        raise CorruptFile(_BAD_ID, f"key {brief(key)}, size {brief(numel)}")
    return key, storage_type.dtype, numel, _ascii(location)


def _ascii(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else brief(value)


def _check_layout(archive: ZipArchive) -> tuple[int, str]:
    """The archive's version and byte order, after checking every entry is in its folder."""
    outside = archive.outside_folder()
    if outside:
        raise CorruptFile("The file is damaged or incomplete: it has entries outside its "
                          "checkpoint folder.", f"{outside[0]!r} is not under {archive.folder}/")
    return read_version(archive), read_byteorder(archive)


def name_payloads(path: Path, error: CorruptFile) -> CheckpointError:
    """A zip refused as damaged may still hold pickles torch (or another zip reader) would run:
    read every `.pkl` entry zipfile can find as data, and name the dangerous globals in them."""
    import zipfile

    findings = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".pkl") and info.file_size <= _SALVAGE_LIMIT:
                    findings += _pickle_findings(path, zf.read(info), info.filename)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        pass  # a zip even zipfile cannot read: the original error stands
    names = list(dict.fromkeys(f.name for f in findings if f.severity == "dangerous"))
    if not names:
        return error
    listed = ", ".join(f"'{n}'" for n in names[:3]) + (" and more" if len(names) > 3 else "")
    return UnsafeContent(f"This file asks to run {listed} when it is loaded, and it is damaged; it "
                         "was not opened and nothing in it was run.", findings,
                         f"{error.message} ({error.details})" if error.details else error.message)


def _pickle_findings(path: Path, data: bytes, where: str) -> list:
    def any_storage(pid: Any) -> Storage:  # stands in for the data: only the globals matter
        return Storage(path, "", 0, 2**62, "uint8")

    try:
        return pickle_vm.load(data, where=where, persistent_load=any_storage).findings
    except UnsafeContent as exc:
        return list(exc.findings)
    except CheckpointError:
        return []


_SALVAGE_LIMIT = 256 << 20


# older names, still imported by torchscript.py / pt2.py

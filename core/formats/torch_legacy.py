"""Reader for legacy (non-zip) torch.save files: pre-1.6, or `_use_new_zipfile_serialization=False`.

The file is, exactly as torch's `_legacy_load` reads it: a pickle of the magic number, a pickle of
the protocol version (1001), a pickle of system info, the main pickle (tensors refer to storages by
persistent id), a pickle of the storage keys, then for each key in that order an 8-byte element
count followed by the storage's raw bytes. Storage offsets are computed by seeking, never reading.
Files that are tar archives (PyTorch < 0.4) are refused, because torch would read them as tar.
"""

from __future__ import annotations

import contextlib
import mmap
import tarfile
from pathlib import Path
from typing import Any

from core.dtypes import itemsize
from core.errors import CorruptFile, UnsafeContent, UnsupportedFormat
from core.formats import pickle_vm
from core.formats.pickle_ops import brief
from core.formats.pickle_vm import PickleResult, StorageType
from core.model import Checkpoint, Finding, Storage

FORMAT = "torch-legacy"
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_BAD_ID = "A tensor in the file refers to its data in a way torch does not write; it is damaged."


def sniff(path: Path, head: bytes) -> bool:
    """The file starts with a pickle of torch's legacy magic number, however it is framed
    (padding opcodes, FRAME, LONG1 or text integers: torch only compares the value)."""
    if not pickle_vm.is_pickle_start(head):
        return False
    try:
        result = _first_pickle(path)
    except CorruptFile:
        return False
    if type(result.value) is int and result.value == MAGIC_NUMBER:
        return True
    _refuse_code(result.findings)  # a plain pickle: torch.load would unpickle it all the same
    return False


def _first_pickle(path: Path) -> PickleResult:
    """The whole first pickle (torch.load runs all of it, however far a payload sits)."""
    with path.open("rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return pickle_vm.load(memoryview(mm), where="magic number")
    finally:
        with contextlib.suppress(BufferError):
            mm.close()


def _refuse_code(findings: list[Finding]) -> None:
    names = [f.name for f in findings if f.kind == "global" and f.severity == "dangerous"]
    if names:
        raise UnsafeContent(f"This file is a plain pickle, not a PyTorch checkpoint, and loading "
                            f"it (as torch.load would) runs '{names[0]}'; it was not opened.",
                            findings)


def open(path: Path) -> Checkpoint:  # noqa: A001 - the reader interface
    """Read the header pickles and the main pickle; storages are located, not read."""
    from core.layout import build_sections

    tree, findings, info = load_tree(path)
    sections, weights = build_sections(tree)
    return Checkpoint(path, FORMAT, sections, weights, info, findings)


def load_tree(path: Path) -> tuple[Any, list, dict]:
    """The main pickle's value, its findings and the file's metadata."""
    _refuse_tar(path)
    with path.open("rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _load(path, memoryview(mm))
    finally:
        with contextlib.suppress(BufferError):  # an error's traceback may still hold a view
            mm.close()


def _load(path: Path, data: memoryview) -> tuple[Any, list, dict]:
    magic = pickle_vm.load(data, where="magic number")
    if type(magic.value) is not int or magic.value != MAGIC_NUMBER:
        raise CorruptFile("This is not a PyTorch checkpoint: its magic number is wrong.")
    version = pickle_vm.load(data, where="protocol version", start=magic.end)
    if version.value != PROTOCOL_VERSION:
        raise CorruptFile("This PyTorch file uses an unknown legacy version.",
                          f"protocol version {brief(version.value)}")
    sys_info = pickle_vm.load(data, where="system info", start=version.end)
    byteorder = "big" if _get(sys_info.value, "little_endian") is False else "little"
    storages = _Storages(path, byteorder)
    main = pickle_vm.load(data, where="main pickle", start=sys_info.end,
                          persistent_load=storages.persistent_load)
    keys = pickle_vm.load(data, where="storage keys", start=main.end)
    storages.place(data, keys)
    info = {"legacy_protocol_version": PROTOCOL_VERSION, "pickle_protocol": main.protocol,
            "byteorder": byteorder, "type_sizes": _get(sys_info.value, "type_sizes"),
            "storage_count": len(storages.roots), "devices": sorted(storages.devices)}
    findings = _dedup(magic.findings + version.findings + sys_info.findings + main.findings
                      + keys.findings)
    return main.value, findings, info


class _Storages:
    """The Storages handed out while the main pickle is read; their offsets are filled in after,
    once the storage key list that follows the main pickle says where each one lies.

    Like torch's `_legacy_load`, roots and views live in ONE table keyed by the file's raw key
    (0 and "0" are different keys), so a view key may name a root and the other way round."""

    def __init__(self, path: Path, byteorder: str) -> None:
        self.path, self.byteorder = path, byteorder
        self.objects: dict[Any, Storage] = {}  # raw key -> root or view (torch's table)
        self.roots: dict[Any, Storage] = {}
        self.views: list[tuple[Storage, Storage, int]] = []  # (view, its parent, byte start)
        self.names: dict[str, Any] = {}  # Storage.key -> the raw key it came from
        self.devices: set[str] = set()

    def persistent_load(self, pid: Any) -> Any:
        parsed = _parse_id(pid)
        if not isinstance(parsed, tuple):
            return parsed
        key, dtype, numel, location, view = parsed
        self.devices.add(location)
        storage = self.objects.get(key)
        if storage is None:  # like torch, the first declaration of a key wins
            storage = self._new(key, str(key), numel * itemsize(dtype), dtype)
            self.roots[key] = storage
        elif storage.nbytes == 0:  # torch makes a new empty storage of this dtype each time
            storage = Storage(self.path, storage.key, -1, 0, dtype, self.byteorder)
        if view is None:
            return storage
        view_key = view[0]
        if view_key not in self.objects:
            size = itemsize(dtype)
            start, count = _view_range(view, storage.nbytes // size)
            self.views.append((self._new(view_key, storage.key, count * size, dtype), storage,
                               start * size))
        return self.objects[view_key]

    def _new(self, key: Any, name: str, nbytes: int, dtype: str) -> Storage:
        if type(self.names.setdefault(str(key), key)) is not type(key):
            raise CorruptFile("The file names one piece of tensor data in two ways that torch "
                              "reads as two separate copies; this app cannot show that exactly, "
                              "so the file was not opened.", f"storage keys {key!r} and {str(key)!r}")
        self.objects[key] = Storage(self.path, name, -1, nbytes, dtype, self.byteorder)
        return self.objects[key]

    def place(self, data: memoryview, keys: PickleResult) -> None:
        offsets = _storage_offsets(data, keys, self.roots, self.byteorder)
        for key, storage in self.roots.items():
            if key not in offsets:
                raise CorruptFile("A tensor's data is missing from the file; it is damaged.",
                                  f"storage {key!r} is not in the storage key list")
            _set_offset(storage, offsets[key])
        for view, parent, start in self.views:  # parents come first: they were made first
            _set_offset(view, parent.offset + start)


def _set_offset(storage: Storage, offset: int) -> None:
    # Storage is frozen for its users; this reader fills the offset in before anyone sees it.
    object.__setattr__(storage, "offset", offset)


def _parse_id(pid: Any) -> Any:
    """('storage', type, key, location, numel, view) -> tuple; ('module', cls, ...) -> cls."""
    if not isinstance(pid, tuple) or not pid:
        raise CorruptFile(_BAD_ID, f"persistent id {brief(pid)}")
    kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
    if kind == "module" and len(pid) == 4:
        return pid[1]  # the container class, an Opaque with its own finding
    if kind != "storage" or len(pid) != 6:
        raise CorruptFile(_BAD_ID, f"persistent id {brief(pid)}")
    _, storage_type, key, location, numel, view = pid
    if not isinstance(storage_type, StorageType) or type(numel) is not int or numel < 0 \
            or type(key) not in (str, int) or not isinstance(location, (str, bytes)):
        raise CorruptFile(_BAD_ID, f"storage {brief(storage_type)} of {brief(numel)}")
    if view is not None and not (isinstance(view, tuple) and len(view) == 3):
        raise CorruptFile(_BAD_ID, f"storage view {brief(view)}")
    location = location.decode("ascii", "replace") if isinstance(location, bytes) else location
    return key, storage_type.dtype, numel, location, view


def _view_range(view: tuple[Any, Any, Any], root_numel: int) -> tuple[int, int]:
    _, offset, count = view
    if type(offset) is not int or type(count) is not int or offset < 0 or count < 0 \
            or offset + count > root_numel:
        raise CorruptFile(_BAD_ID, f"storage view {brief(view)} of {root_numel} elements")
    return offset, count


def _storage_offsets(data: memoryview, keys: PickleResult, roots: dict[Any, Storage],
                     byteorder: str) -> dict[Any, int]:
    """Walk the storage area as torch does: per key, an 8-byte element count, then the bytes."""
    if not isinstance(keys.value, list):
        raise CorruptFile("The file is damaged: its list of stored tensors is malformed.",
                          type(keys.value).__name__)
    pos, out = keys.end, {}
    for raw_key in keys.value:
        if type(raw_key) not in (str, int):
            raise CorruptFile("The file is damaged: its list of stored tensors is malformed.",
                              brief(raw_key))
        key = raw_key  # as torch looks it up: 0 and "0" are different keys
        if key not in roots:  # a view key here would make torch read data into the view
            raise CorruptFile("The file is damaged: it stores data for a tensor it never uses.",
                              f"storage key {key!r} not referenced as a storage by the main pickle")
        root = roots[key]
        if pos + 8 > len(data):
            raise _truncated(key)
        count = int.from_bytes(data[pos:pos + 8], byteorder, signed=True)
        if count * itemsize(root.dtype) != root.nbytes:
            raise CorruptFile("The file is damaged: a stored tensor has the wrong size.",
                              f"storage {key!r}: header says {count} elements, pickle says "
                              f"{root.nbytes // itemsize(root.dtype)}")
        if pos + 8 + root.nbytes > len(data):
            raise _truncated(key)
        out[key] = pos + 8  # a key listed twice is read twice by torch: the last one wins
        pos += 8 + root.nbytes
    return out


def _refuse_tar(path: Path) -> None:
    """torch.load tries the pre-0.4 tar format first; if it is a tar, torch would read that."""
    try:
        with tarfile.open(path, mode="r:", format=tarfile.PAX_FORMAT):
            pass
    except tarfile.TarError:
        return
    except Exception as exc:  # torch.load would fail on this file too
        raise CorruptFile("The file could not be read as a PyTorch checkpoint.", repr(exc)) from None
    raise UnsupportedFormat("This file was saved by a very old PyTorch (before 0.4, tar format), "
                            "which this app does not read.")


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _dedup(findings: list) -> list:
    return list({(f.name, f.where): f for f in findings}.values())


def _truncated(key: str) -> CorruptFile:
    return CorruptFile("The file is damaged or incomplete: its tensor data ends too early.",
                       f"storage {key!r} runs past the end of the file")

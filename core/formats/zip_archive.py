"""Reading torch-style zip archives safely: the directory, record offsets, small records.

Lookups follow torch's own reader (miniz inside `PyTorchStreamReader`): the archive's folder is the
part before the first "/" of the FIRST central-directory entry, records are looked up as
"<folder>/<name>" ignoring case, and a record's bytes start after its LOCAL header
(30 + name length + extra length). Names that collide ignoring case are refused, so we can never
read a different entry than torch would. CRCs are not checked (torch does not check them either).

Compressed (deflated) records, which torch never writes but can read, are supported: their
Storage uses the encoding "zip-deflate", decoded on demand through `core.tensor_io.DECODERS`.
"""

from __future__ import annotations

import string
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from core.errors import CorruptFile
from core.model import Storage
from core.tensor_io import DECODERS

ZIP_MAGIC = b"PK\x03\x04"
LOCAL_HEADER_SIZE = 30
STORED, DEFLATED = 0, 8
MAX_RECORD_READ = 1 << 30  # largest pickle/json record read into memory (1 GiB)
DEFLATE_ENCODING = "zip-deflate"
_DAMAGED = "The file is damaged or incomplete: {}."


@dataclass(frozen=True)
class Record:
    """One entry of the archive, as its central directory describes it."""

    name: str  # full name inside the zip, e.g. "archive/data/0"
    header_offset: int  # where its local header starts
    size: int  # uncompressed size
    compressed_size: int
    method: int  # 0 = stored, 8 = deflated

    @property
    def stored(self) -> bool:
        return self.method == STORED


@dataclass
class ZipArchive:
    """The directory of a torch-style zip archive; reads no record data until asked."""

    path: Path
    folder: str  # torch's "archive name": first entry's top folder ("archive", "my_weights", ...)
    records: dict[str, Record]  # by full name, in central-directory order
    file_size: int
    _by_lower: dict[str, Record] = field(default_factory=dict, repr=False)
    _offsets: dict[str, int] = field(default_factory=dict, repr=False)

    def names(self) -> list[str]:
        """Record names relative to the folder (e.g. "data.pkl", "data/0"), in directory order."""
        cut = len(self.folder) + 1
        return [n[cut:] for n in self.records if n.startswith(self.folder + "/")]

    def get(self, name: str) -> Record | None:
        """The record "<folder>/<name>" matched ignoring ASCII case (as torch does), or None."""
        return self._by_lower.get(_fold(f"{self.folder}/{name}"))

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def record(self, name: str) -> Record:
        rec = self.get(name)
        if rec is None:
            raise CorruptFile(_DAMAGED.format(f"the entry '{name}' is missing"),
                              f"{self.path}: no record {self.folder}/{name}")
        return rec

    def data_offset(self, rec: Record) -> int:
        """File offset of a record's bytes, from its local header (checked against the file)."""
        if not self._offsets:  # read every local header in one pass over the file
            with open(self.path, "rb") as f:
                for each in self.records.values():
                    self._offsets[each.name] = self._local_offset(f, each)
        return self._offsets[rec.name]

    def _local_offset(self, f: BinaryIO, rec: Record) -> int:
        f.seek(rec.header_offset)
        header = f.read(LOCAL_HEADER_SIZE)
        if len(header) < LOCAL_HEADER_SIZE or not header.startswith(ZIP_MAGIC):
            raise CorruptFile(_DAMAGED.format(f"the entry '{rec.name}' has a broken header"),
                              f"bad local header at {rec.header_offset}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        offset = rec.header_offset + LOCAL_HEADER_SIZE + name_len + extra_len
        if offset + rec.compressed_size > self.file_size:
            raise CorruptFile(_DAMAGED.format(f"the entry '{rec.name}' is cut off"),
                              f"needs bytes up to {offset + rec.compressed_size}, "
                              f"file has {self.file_size}")
        return offset

    def read(self, name: str, limit: int = MAX_RECORD_READ) -> bytes:
        """The whole content of a small record (a pickle, json, version text)."""
        rec = self.record(name)
        if rec.size > limit:
            raise CorruptFile(f"The entry '{name}' is too large to read safely.",
                              f"{rec.size} bytes, limit {limit}")
        return _read_record(self.path, self.data_offset(rec), rec)

    def outside_folder(self) -> list[str]:
        """Entries not under "<folder>/" (exact case); torch.load refuses such archives."""
        return [n for n in self.records if not n.startswith(self.folder + "/")]

    def storage(self, name: str, dtype: str, nbytes: int, byteorder: str = "little") -> Storage:
        """Where the first `nbytes` of record `name` live (raw for stored, else zip-deflate)."""
        rec = self.record(name)
        if nbytes > rec.size:
            raise CorruptFile(
                "A tensor claims more data than the file holds for it; the file is damaged.",
                f"{rec.name}: needs {nbytes} bytes, record has {rec.size}",
            )
        encoding = "raw" if rec.stored else DEFLATE_ENCODING
        return Storage(self.path, key=rec.name, offset=self.data_offset(rec), nbytes=nbytes,
                       dtype=dtype, byteorder=byteorder, encoding=encoding)


def is_zip(head: bytes) -> bool:
    """torch's own test: the file starts with a local-header signature."""
    return head.startswith(ZIP_MAGIC)


def open_archive(path: Path) -> ZipArchive:
    """Read the central directory of a torch-style zip (no record data is read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            concat, count = _prepended_bytes(zf, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            struct.error, NotImplementedError) as exc:  # NotImplementedError: "zip version 24.9"
        raise CorruptFile(_DAMAGED.format("its ZIP directory could not be read"),
                          f"{type(exc).__name__}: {exc}") from None
    if concat:
        raise CorruptFile(_DAMAGED.format("it has extra data in front of its ZIP archive"),
                          f"{concat} unexpected bytes before the archive")
    if count is not None and count != len(infos):  # torch (miniz) reads `count` entries
        raise CorruptFile(_DAMAGED.format("its ZIP directory is inconsistent"),
                          f"the end record lists {count} entries, the directory {len(infos)}")
    if not infos:
        raise CorruptFile(_DAMAGED.format("the archive is empty"))
    folder, sep, _ = infos[0].orig_filename.partition("/")
    if not sep:
        raise CorruptFile(_DAMAGED.format("its entries are not inside a folder"),
                          f"first entry: {infos[0].orig_filename!r}")
    archive = ZipArchive(path, folder, {}, path.stat().st_size)
    for info in infos:
        _add_record(archive, info)
    return archive


def read_version(archive: ZipArchive) -> int:
    """The archive's format version (".data/version" or "version"), required as torch does."""
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


def read_byteorder(archive: ZipArchive) -> str:
    """The byte order named by the "byteorder" record; little-endian when absent, as in torch."""
    if not archive.has("byteorder"):
        return "little"  # torch's default for files without a byteorder mark
    raw = archive.read("byteorder", limit=16)
    if raw not in (b"little", b"big"):
        raise CorruptFile("The file is damaged: it names an unknown byte order.", repr(raw))
    return raw.decode()


def first_entry_name(head: bytes) -> str:
    """The (lower-cased) name in the first local header, for sniffing damaged archives."""
    if len(head) < 30:
        return ""
    name_len = int.from_bytes(head[26:28], "little")
    return head[30:30 + name_len].decode("utf-8", "replace").lower()


def _add_record(archive: ZipArchive, info: zipfile.ZipInfo) -> None:
    name = info.orig_filename  # as stored: zipfile's .filename cuts at NUL and rewrites "\\"
    if info.flag_bits & 0x1:
        raise CorruptFile("The file is encrypted; encrypted checkpoints cannot be opened.",
                          name)
    if info.compress_type not in (STORED, DEFLATED):
        raise CorruptFile(_DAMAGED.format(f"the entry '{name}' uses an unknown "
                                          "compression"), f"method {info.compress_type}")
    if info.compress_type == STORED and info.compress_size != info.file_size:
        raise CorruptFile(_DAMAGED.format(f"the entry '{name}' has inconsistent sizes"),
                          f"stored {info.compress_size} vs {info.file_size}")
    lower = _fold(name)
    if lower in archive._by_lower:
        raise CorruptFile("The file contains two entries with the same name, so it is ambiguous "
                          "which one would be loaded; it was not opened.", name)
    rec = Record(name, info.header_offset, info.file_size, info.compress_size,
                 info.compress_type)
    archive.records[name] = rec
    archive._by_lower[lower] = rec


def _fold(name: str) -> str:
    """Lower-case ASCII letters only, as miniz compares names (Python's lower() folds more)."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _prepended_bytes(zf: zipfile.ZipFile, path: Path) -> tuple[int, int | None]:
    """Bytes before the archive proper (zipfile tolerates them, torch's reader does not), and
    the entry count the end record states (zipfile ignores it; torch reads that many)."""
    end_rec = getattr(zipfile, "_EndRecData", None)
    if end_rec is None:  # pragma: no cover - stdlib internals changed
        return 0, None
    with open(path, "rb") as f:
        rec = end_rec(f)
    if rec is None:  # pragma: no cover - zipfile already parsed it
        return 0, None
    return zf.start_dir - rec[zipfile._ECD_OFFSET], rec[zipfile._ECD_ENTRIES_TOTAL]


def _read_record(path: Path, offset: int, rec: Record) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(rec.size) if rec.stored else _inflate(f, rec.size, rec.compressed_size)
    if len(data) != rec.size:
        raise CorruptFile(_DAMAGED.format(f"the entry '{rec.name}' is cut off"),
                          f"read {len(data)} of {rec.size} bytes")
    return data


def _inflate(f: BinaryIO, size: int, compressed_size: int | None) -> bytes:
    """Decompress a raw deflate stream, producing at most `size` bytes."""
    decomp = zlib.decompressobj(-15)
    out = bytearray()
    left = compressed_size if compressed_size is not None else -1
    try:
        while len(out) < size and not decomp.eof:
            chunk = decomp.unconsumed_tail or f.read(1 << 20 if left < 0 else min(left, 1 << 20))
            if not chunk:
                break
            if not decomp.unconsumed_tail and left >= 0:
                left -= len(chunk)
            out += decomp.decompress(chunk, size - len(out))
    except zlib.error as exc:
        raise CorruptFile(_DAMAGED.format("a compressed entry is broken"), str(exc)) from None
    return bytes(out)


def _decode_deflate(storage: Storage) -> bytes:
    with open(storage.path, "rb") as f:
        f.seek(storage.offset)
        data = _inflate(f, storage.nbytes, None)
    if len(data) != storage.nbytes:
        raise CorruptFile(_DAMAGED.format(f"the entry '{storage.key}' is cut off"),
                          f"decompressed {len(data)} of {storage.nbytes} bytes")
    return data


DECODERS[DEFLATE_ENCODING] = _decode_deflate

"""Byte-level surgery on zip archives: lying central directories, end records and local headers.

Archives are first rewritten by Python's zipfile (stored entries, no zip64 records), so every field
sits where the classic zip layout puts it; torch reads such archives like its own.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

EOCD = b"PK\x05\x06"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"


@dataclass(frozen=True)
class Entry:
    """Where one central-directory entry and its fields sit in the archive bytes."""

    name: str
    at: int  # offset of the central entry
    local: int  # offset of its local header

    @property
    def sizes_at(self) -> int:  # compressed size, then uncompressed size (4 bytes each)
        return self.at + 20

    @property
    def local_field_at(self) -> int:
        return self.at + 42


def plain_zip(src: Path, records: dict[str, bytes] | None = None) -> bytearray:
    """`src` rewritten by zipfile, stored, with some records' bytes replaced or added."""
    records = dict(records or {})
    out = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(zipfile.ZipInfo(info.filename), records.pop(info.filename, None)
                          or zin.read(info))
        for name, data in records.items():
            zout.writestr(zipfile.ZipInfo(name), data)
    return bytearray(out.getvalue())


def eocd_at(raw: bytes | bytearray) -> int:
    return raw.rindex(EOCD)


def cd_offset(raw: bytes | bytearray) -> int:
    return struct.unpack_from("<I", raw, eocd_at(raw) + 16)[0]


def entries(raw: bytes | bytearray) -> list[Entry]:
    pos, out = cd_offset(raw), []
    while raw[pos:pos + 4] == CENTRAL:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, pos + 28)
        local = struct.unpack_from("<I", raw, pos + 42)[0]
        out.append(Entry(raw[pos + 46:pos + 46 + name_len].decode(), pos, local))
        pos += 46 + name_len + extra_len + comment_len
    return out


def entry(raw: bytes | bytearray, suffix: str) -> Entry:
    return next(e for e in entries(raw) if e.name.endswith(suffix))


def put(raw: bytearray, at: int, fmt: str, *values: int) -> bytearray:
    struct.pack_into(fmt, raw, at, *values)
    return raw


def second_directory(raw: bytearray, suffix: str, hidden: bytes) -> bytearray:
    """Add a hidden record, and a second central directory + end record inside the first end
    record's comment. The second directory points the entry ending with `suffix` at the hidden
    record; a reader that takes the last end record sees only the second directory."""
    first_cd, eocd = cd_offset(raw), eocd_at(raw)
    directory = bytes(raw[first_cd:eocd])
    hidden_name = entry(raw, suffix).name
    name = hidden_name.encode()
    local = (LOCAL + struct.pack("<HHHHHIIIHH", 20, 0, 0, 0, 0, 0, len(hidden), len(hidden),
                                 len(name), 0) + name + hidden)
    cd1_at = first_cd + len(local)  # the hidden record goes where the first directory was
    second = _retarget(bytearray(directory), hidden_name, first_cd, len(hidden))
    eocd1 = put(bytearray(raw[eocd:eocd + 22]), 16, "<I", cd1_at)
    put(eocd1, 20, "<H", len(second) + 22)  # its comment: the second directory and end record
    eocd2 = put(bytearray(raw[eocd:eocd + 22]), 16, "<I", cd1_at + len(directory) + 22)
    return bytearray(raw[:first_cd] + local + directory + eocd1 + second + eocd2)


def _retarget(directory: bytearray, name: str, local: int, size: int) -> bytearray:
    """The directory with entry `name` pointed at another local header of `size` bytes."""
    pos = 0
    while directory[pos:pos + 4] == CENTRAL:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", directory, pos + 28)
        if directory[pos + 46:pos + 46 + name_len].decode() == name:
            put(directory, pos + 16, "<III", 0, size, size)  # crc (unchecked), sizes
            put(directory, pos + 42, "<I", local)
        pos += 46 + name_len + extra_len + comment_len
    return directory

"""Hostile files whose framing is unusual but which torch.load still reads (and so runs):
plain pickles with the payload late or behind a FRAME, legacy files whose magic number is padded,
framed or written as LONG1 / text / octal / hex integers, a zip with a `code/` folder but no
`constants.pkl` (torch only tests for constants.pkl), and a zip with two `data.pkl` entries.
Used by test_pickle_corpus.py: each must be refused naming the payload, or opened with it as a
finding, whatever else is odd about the file.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from tests.fixtures.models import FixtureFiles
from tests.security import payloads as p

Build = Callable[[FixtureFiles, Path, Path], Path]
MAGIC = 0x1950A86A20F9469CFC6C
_RAW = MAGIC.to_bytes(10, "little")
MAGIC_FRAMINGS = {
    "long1": b"\x80\x02\x8a\x0a" + _RAW + b".",
    "text_long": b"L" + str(MAGIC).encode() + b"L\n.",
    "octal_int": b"I0o" + oct(MAGIC)[2:].encode() + b"\n.",  # CPython reads INT with base 0
    "hex_int": b"I" + hex(MAGIC).encode() + b"\n.",
    "padded": b"\x80\x02N0" * 40 + b"\x8a\x0a" + _RAW + b".",
    "framed": b"\x80\x04\x95" + struct.pack("<Q", 13) + b"\x8a\x0a" + _RAW + b".",
}


def _plain_late(f: FixtureFiles, t: Path, m: Path) -> Path:
    path = t / "late.pkl"
    path.write_bytes(b"\x80\x02(" + b"K\x01" * 300 + b"t0" + p.system_call(m) + b".")
    return path


def _plain_frame_first(f: FixtureFiles, t: Path, m: Path) -> Path:
    body = p.system_call(m) + b"."
    path = t / "framed.pkl"
    path.write_bytes(b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body)
    return path


def _legacy_magic(magic: bytes) -> Build:
    def build(f: FixtureFiles, t: Path, m: Path) -> Path:
        path = p.legacy_with(t, "odd_magic", 3, p.prefixed(p.system_call(m)))
        raw = path.read_bytes()
        end = p.legacy_pickles(raw)[0][1]
        path.write_bytes(magic + raw[end:])
        return path
    return build


def _zip_records(t: Path, name: str, m: Path, extra: Callable[[zipfile.ZipFile, str, bytes], None]
                 ) -> Path:
    """torch.save of a small state dict rewritten entry by entry; `extra(out, name, body)` writes
    each entry (data.pkl gets the payload in front)."""
    buf = io.BytesIO()
    torch.save(p.TINY_STATE, buf)
    path = t / f"{name}.pt"
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/data.pkl"):
                body = p.prefixed(p.system_call(m))(body)
            extra(out, info.filename, body)
    return path


def _zip_code_folder(f: FixtureFiles, t: Path, m: Path) -> Path:
    def write(out: zipfile.ZipFile, name: str, body: bytes) -> None:
        out.writestr(name, body)
        if name.endswith("/data.pkl"):
            out.writestr(name.replace("data.pkl", "code/__torch__/model.py"), b"x = 1\n")
    return _zip_records(t, "code_folder", m, write)


def _zip_duplicate_data_pkl(f: FixtureFiles, t: Path, m: Path) -> Path:
    def write(out: zipfile.ZipFile, name: str, body: bytes) -> None:
        out.writestr(name, body)
        if name.endswith("/data.pkl"):
            out.writestr(name, p.state_dict_pickle(2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        return _zip_records(t, "duplicate", m, write)


def cases() -> dict[str, tuple[Build, tuple[str, ...], bool]]:
    """name -> (build, globals one of which must be named, torch.load runs it)."""
    out = {"plain_pickle_payload_late": (_plain_late, ("os.system",), True),
           "plain_pickle_frame_first": (_plain_frame_first, ("os.system",), True),
           "zip_code_folder_without_constants": (_zip_code_folder, ("os.system",), True),
           "zip_duplicate_data_pkl": (_zip_duplicate_data_pkl, ("os.system",), False)}
    out.update({f"legacy_magic_{name}": (_legacy_magic(magic), ("os.system",), True)
                for name, magic in MAGIC_FRAMINGS.items()})
    return out

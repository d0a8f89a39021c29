"""Building blocks for hostile checkpoints, made at test time (nothing runnable is stored).

Every payload only ever touches a `marker` file in the test's temp folder; the tests assert that
file never appears. Pickle bytes are written opcode by opcode so each case is exactly the trick it
names, whatever the local `pickle` module would emit.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from core.dtypes import itemsize
from core.formats import pickle_vm
from core.model import Storage

TINY_STATE = {"weight": torch.arange(4, dtype=torch.float32)}


class Call:
    """Pickles as "call func(*args)" (the classic __reduce__ payload); never called here."""

    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def touch(marker: Path) -> str:
    return f"touch '{marker}'"


def text(value: str) -> bytes:
    """BINUNICODE opcode for a string."""
    raw = value.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_text(value: str) -> bytes:
    """SHORT_BINUNICODE opcode (protocol 4) for a string."""
    raw = value.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def system_call(marker: Path, module: str = "os") -> bytes:
    """GLOBAL os.system + its argument + REDUCE: leaves os.system("touch marker") on the stack."""
    return b"c" + module.encode() + b"\nsystem\n" + text(touch(marker)) + b"\x85R"


def state_dict_pickle(protocol: int = 2) -> bytes:
    """The data.pkl torch.save writes for TINY_STATE (storages by persistent id)."""
    buf = io.BytesIO()
    torch.save(TINY_STATE, buf, pickle_protocol=protocol)
    with zipfile.ZipFile(buf) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))


# ---- files -----------------------------------------------------------------------------------
def torch_zip_with(tmp: Path, name: str, data_pkl: bytes, deflate: bool = False) -> Path:
    """A real torch.save zip of TINY_STATE whose data.pkl is replaced by `data_pkl`."""
    buf = io.BytesIO()
    torch.save(TINY_STATE, buf)
    dst = tmp / f"{name}.pt"
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            is_pickle = info.filename.endswith("/data.pkl")
            body = data_pkl if is_pickle else src.read(info)
            out.writestr(zipfile.ZipInfo(info.filename), body,
                         compress_type=method if is_pickle else zipfile.ZIP_STORED)
    return dst


def torch_save(tmp: Path, name: str, payload: object, protocol: int = 2,
               legacy: bool = False) -> Path:
    """torch.save of a dict holding a real tensor and `payload`."""
    path = tmp / f"{name}.pt"
    torch.save({**TINY_STATE, "payload": payload}, path, pickle_protocol=protocol,
               _use_new_zipfile_serialization=not legacy)
    return path


def replace_records(src: Path, dst: Path, records: dict[str, bytes]) -> Path:
    """A copy of zip `src` whose records ending with a key of `records` get new bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = next((v for k, v in records.items() if info.filename.endswith(k)), None)
            zout.writestr(zipfile.ZipInfo(info.filename), zin.read(info) if body is None else body)
    return dst


def legacy_pickles(raw: bytes) -> list[tuple[int, int]]:
    """[start, end) of the five pickles of a legacy torch file: magic, version, sys info, main,
    storage keys (read with our own interpreter, which never runs anything)."""
    spans, pos = [], 0
    for where in ("magic", "version", "sys info", "main", "keys"):
        end = pickle_vm.load(raw, where=where, start=pos, persistent_load=_any_storage).end
        spans.append((pos, end))
        pos = end
    return spans


def _any_storage(pid: tuple) -> Storage:
    dtype = pid[1].dtype
    return Storage(Path("unused"), str(pid[2]), 0, pid[4] * itemsize(dtype), dtype)


def legacy_with(tmp: Path, name: str, index: int, make: Callable[[bytes], bytes]) -> Path:
    """A legacy torch file of TINY_STATE whose pickle number `index` is replaced by
    `make(original pickle bytes)`."""
    buf = io.BytesIO()
    torch.save(TINY_STATE, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    start, end = legacy_pickles(raw)[index]
    path = tmp / f"{name}.pt"
    path.write_bytes(raw[:start] + make(raw[start:end]) + raw[end:])
    return path


def prefixed(payload: bytes) -> Callable[[bytes], bytes]:
    """Run `payload` (then POP its result) before the original pickle's own opcodes."""
    def make(original: bytes) -> bytes:
        body = original[2:] if original[:1] == b"\x80" else original
        return b"\x80\x02" + payload + b"0" + body
    return make


def nested_zip(tmp: Path, name: str, inner: Path) -> Path:
    """An ordinary zip (a download bundle) holding a checkpoint file."""
    path = tmp / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("bundle/README.txt", b"weights inside\n")
        zf.write(inner, f"bundle/{inner.name}")
    return path


def pickle_of(obj: object, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)

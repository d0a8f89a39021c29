"""ONNX TensorProto: where an initializer's bytes live, and decoding of the typed-field layouts.

An initializer keeps its values in one of three places: `raw_data` (plain little-endian bytes,
read straight from the file), an external data file, or a typed repeated field (`float_data`,
`int32_data`, ...). The typed layout is decoded on demand by the "onnx-typed" decoder below.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from core.dtypes import itemsize
from core.errors import CorruptFile
from core.formats import protobuf_wire as pw
from core.model import Storage

# TensorProto.DataType -> torch dtype name (sub-byte and string types are not listed)
ONNX_DTYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
    15: "complex128", 16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz",
    19: "float8_e5m2", 20: "float8_e5m2fnuz", 24: "float8_e8m0fnu",
}
ONNX_TYPE_NAMES: dict[int, str] = {0: "UNDEFINED", 8: "STRING", 21: "UINT4", 22: "INT4",
                                   23: "FLOAT4E2M1", 25: "UINT2", 26: "INT2",
                                   27: "FLOAT6E2M3", 28: "FLOAT6E3M2"}
FLOAT_DATA, INT32_DATA, INT64_DATA, DOUBLE_DATA, UINT64_DATA = 4, 5, 7, 10, 11
_TYPED = (FLOAT_DATA, INT32_DATA, INT64_DATA, DOUBLE_DATA, UINT64_DATA)
_FIXED_SIZE = {FLOAT_DATA: 4, DOUBLE_DATA: 8}
EXTERNAL = 1
TYPED_ENCODING = "onnx-typed"


def typed_field(data_type: int) -> int:
    """Which repeated field holds values of this type when raw_data is not used."""
    if data_type in (1, 14):
        return FLOAT_DATA
    if data_type in (11, 15):
        return DOUBLE_DATA
    if data_type == 7:
        return INT64_DATA
    if data_type in (12, 13):
        return UINT64_DATA
    return INT32_DATA


@dataclass
class TensorRecord:
    """The fields of one TensorProto, with byte ranges instead of copies of the data."""

    tag_pos: int  # where the enclosing field's tag starts (self-delimiting for the decoder)
    name: str = ""
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: pw.Field | None = None
    typed: dict[int, list[pw.Field]] = field(default_factory=dict)
    external: dict[str, str] = field(default_factory=dict)
    data_location: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(pw.signed64(d) for d in self.dims)


def _varint(f: pw.Field) -> int:
    if f.wire != pw.VARINT:
        raise pw.WireError(f"field {f.number} should be a number but has wire type {f.wire}")
    return f.value


def parse_tensor(buf: pw.Buffer, outer: pw.Field) -> TensorRecord:
    """A TensorProto occupying the payload of `outer`; later scalar fields win, as in protobuf."""
    if outer.wire != pw.LEN:
        raise pw.WireError(f"a tensor at byte {outer.tag_pos} is not a message")
    rec = TensorRecord(tag_pos=outer.tag_pos)
    dims: list[pw.Field] = []
    for f in pw.iter_fields(buf, outer.start, outer.end):
        if f.number == 1:
            dims.append(f)
        elif f.number == 2:
            rec.data_type = _varint(f) & 0xFFFFFFFF
        elif f.number in _TYPED:
            rec.typed.setdefault(f.number, []).append(f)
        elif f.number == 8:
            rec.name = pw.text(buf, f)
        elif f.number == 9:
            if f.wire != pw.LEN:
                raise pw.WireError(f"raw_data at byte {f.tag_pos} is not a byte string")
            rec.raw = f
        elif f.number == 13:
            key, value = _string_pair(buf, f)
            rec.external[key] = value
        elif f.number == 14:
            rec.data_location = _varint(f)
    rec.dims = pw.repeated_varints(buf, dims)
    return rec


def _string_pair(buf: pw.Buffer, outer: pw.Field) -> tuple[str, str]:
    """A StringStringEntryProto (key = 1, value = 2)."""
    if outer.wire != pw.LEN:
        raise pw.WireError(f"a key/value entry at byte {outer.tag_pos} is not a message")
    key = value = ""
    for f in pw.iter_fields(buf, outer.start, outer.end):
        if f.number == 1:
            key = pw.text(buf, f)
        elif f.number == 2:
            value = pw.text(buf, f)
    return key, value


def typed_count(buf: pw.Buffer, rec: TensorRecord) -> int:
    """How many values the typed field for this tensor's type holds (complex: two per element)."""
    number = typed_field(rec.data_type)
    size = _FIXED_SIZE.get(number)
    count = 0
    for f in rec.typed.get(number, []):
        if f.wire == pw.LEN:
            payload = bytes(buf[f.start:f.end])
            count += len(payload) // size if size else pw.count_varints(payload)
        else:
            count += 1
    return count


def typed_bytes(buf: pw.Buffer, rec: TensorRecord, dtype: str) -> bytes:
    """Little-endian bytes of `dtype` decoded from the tensor's typed field."""
    number = typed_field(rec.data_type)
    fields = rec.typed.get(number, [])
    size = _FIXED_SIZE.get(number)
    if size:
        return pw.repeated_fixed(buf, fields, size)
    values = pw.repeated_varints(buf, fields)
    width = itemsize(dtype)
    if dtype == "bool":
        values = [1 if v else 0 for v in values]
    mask = (1 << (8 * width)) - 1
    code = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
    return struct.pack(f"<{len(values)}{code}", *(v & mask for v in values))


@contextmanager
def mapped(path: Path) -> Iterator[mmap.mmap]:
    """The whole file, memory-mapped read-only (never read into memory at once)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mm
        finally:
            mm.close()


def decode_typed(storage: Storage) -> bytes:
    """The "onnx-typed" decoder: re-parse one TensorProto and decode its typed field."""
    try:
        with mapped(storage.path) as buf:
            rec = parse_tensor(buf, pw.field_at(buf, storage.offset, len(buf)))
            data = typed_bytes(buf, rec, storage.dtype)
    except (pw.WireError, KeyError, struct.error) as exc:
        raise CorruptFile(f"The values of tensor '{storage.key}' in this ONNX file are damaged.",
                          str(exc)) from None
    if len(data) != storage.nbytes:
        raise CorruptFile(f"The values of tensor '{storage.key}' in this ONNX file changed or are "
                          "damaged.", f"decoded {len(data)} bytes, expected {storage.nbytes}")
    return data


def expected_nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return prod(shape) * itemsize(dtype)

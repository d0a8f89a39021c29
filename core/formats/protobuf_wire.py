"""A small protobuf wire-format scanner over bytes or an mmap: it never copies large payloads.

Fields are yielded with the byte range of their value, so callers can record where a blob lives
(e.g. an ONNX initializer's raw_data) without reading it. Every length is bounded by the bytes
that remain in the enclosing message; anything malformed raises `WireError`.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from typing import NamedTuple

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_MASK64 = (1 << 64) - 1
_CONTINUATION = bytes(range(128, 256))

Buffer = bytes | bytearray | mmap.mmap


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


class Field(NamedTuple):
    number: int
    wire: int
    value: int  # the varint / fixed value, or the payload length for LEN fields
    start: int  # first byte of the value (the payload for LEN fields)
    end: int  # one past the last byte of the value
    tag_pos: int  # where the field's tag begins


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode one varint at `pos`; returns (value as unsigned 64-bit, position after it)."""
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"a number runs past the end of its message at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"a number is longer than 10 bytes at byte {pos}")


def read_tag(buf: Buffer, pos: int, end: int) -> tuple[int, int, int]:
    """Decode a field tag; returns (field number, wire type, position after it)."""
    key, after = read_varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    if number == 0 or number >= (1 << 29):
        raise WireError(f"invalid field number {number} at byte {pos}")
    return number, wire, after


def read_value(buf: Buffer, pos: int, end: int, wire: int) -> tuple[int, int, int]:
    """Decode the value after a tag; returns (value or length, value start, value end)."""
    if wire == VARINT:
        value, after = read_varint(buf, pos, end)
        return value, pos, after
    if wire in (I64, I32):
        size = 8 if wire == I64 else 4
        if size > end - pos:
            raise WireError(f"a fixed-size value runs past the end of its message at byte {pos}")
        return int.from_bytes(buf[pos:pos + size], "little"), pos, pos + size
    if wire == LEN:
        length, start = read_varint(buf, pos, end)
        if length > end - start:
            raise WireError(f"a block of {length} bytes at byte {start} runs past the end of its "
                            f"message ({end - start} bytes left)")
        return length, start, start + length
    raise WireError(f"unsupported wire type {wire} at byte {pos}")


def iter_fields(buf: Buffer, start: int, end: int) -> Iterator[Field]:
    """Every field of the message occupying buf[start:end], in file order."""
    pos = start
    while pos < end:
        key = buf[pos]
        # fast path (most tags and short lengths are one byte); the general readers check the rest
        if key < 0x80 and key >= 8 and key & 7 == LEN and pos + 1 < end and buf[pos + 1] < 0x80:
            vstart = pos + 2
            vend = vstart + buf[pos + 1]
            if vend > end:
                raise WireError(f"a block of {buf[pos + 1]} bytes at byte {vstart} runs past the "
                                f"end of its message ({end - vstart} bytes left)")
            yield Field(key >> 3, LEN, vend - vstart, vstart, vend, pos)
            pos = vend
            continue
        number, wire, after = read_tag(buf, pos, end)
        value, vstart, vend = read_value(buf, after, end, wire)
        yield Field(number, wire, value, vstart, vend, pos)
        pos = vend


def field_at(buf: Buffer, pos: int, end: int) -> Field:
    """The single field whose tag starts at `pos`."""
    number, wire, after = read_tag(buf, pos, end)
    value, vstart, vend = read_value(buf, after, end, wire)
    return Field(number, wire, value, vstart, vend, pos)


def unpack_varints(buf: Buffer, start: int, end: int) -> list[int]:
    """A packed repeated varint payload buf[start:end]."""
    values, pos = [], start
    while pos < end:
        value, pos = read_varint(buf, pos, end)
        values.append(value)
    return values


def count_varints(payload: bytes) -> int:
    """How many varints a packed payload holds (bytes without the continuation bit)."""
    return len(payload.translate(None, _CONTINUATION))


def repeated_varints(buf: Buffer, fields: list[Field]) -> list[int]:
    """Values of a repeated varint field, whether written packed or one per tag."""
    values: list[int] = []
    for f in fields:
        if f.wire == LEN:
            values.extend(unpack_varints(buf, f.start, f.end))
        elif f.wire == VARINT:
            values.append(f.value)
        else:
            raise WireError(f"field {f.number} has wire type {f.wire}, expected a number")
    return values


def repeated_fixed(buf: Buffer, fields: list[Field], size: int) -> bytes:
    """Little-endian bytes of a repeated fixed32/fixed64 field, packed or not."""
    wire = I32 if size == 4 else I64
    parts = []
    for f in fields:
        if f.wire not in (LEN, wire) or (f.wire == LEN and (f.end - f.start) % size):
            raise WireError(f"field {f.number} does not hold {size}-byte values")
        parts.append(bytes(buf[f.start:f.end]))
    return b"".join(parts)


def signed64(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def text(buf: Buffer, f: Field) -> str:
    if f.wire != LEN:
        raise WireError(f"field {f.number} should be text but has wire type {f.wire}")
    return bytes(buf[f.start:f.end]).decode("utf-8", errors="replace")


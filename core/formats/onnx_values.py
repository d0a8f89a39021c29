"""Storage for each tensor an ONNX graph holds, and the decoders for layouts that are not plain bytes.

A TensorProto keeps raw bytes (read in place), an external data file, or a typed field ("onnx-typed",
see `onnx_tensor`). A Constant's value_float(s)/value_int(s) are attribute fields: packed floats are
plain bytes in place, the rest is decoded on demand ("onnx-attribute"). A SparseTensorProto is
densified on demand ("onnx-sparse"): its values scattered at its indices, zeros elsewhere.
"""

from __future__ import annotations

import struct
from math import prod
from pathlib import Path

from core.dtypes import itemsize
from core.errors import CorruptFile
from core.formats import protobuf_wire as pw
from core.formats.onnx_external import ExternalData
from core.formats.onnx_graph import A_F, A_I, CONSTANT_VALUES, Found, sub_fields
from core.formats.onnx_tensor import (
    EXTERNAL,
    ONNX_DTYPES,
    ONNX_TYPE_NAMES,
    TYPED_ENCODING,
    TensorRecord,
    expected_nbytes,
    mapped,
    parse_tensor,
    typed_bytes,
    typed_count,
)
from core.model import Storage

ATTRIBUTE_ENCODING, SPARSE_ENCODING = "onnx-attribute", "onnx-sparse"
INT64 = 7


class Unreadable(Exception):
    """A tensor this app leaves out (with a finding), e.g. strings or external sparse values."""


def damaged(name: str, what: str, details: str) -> CorruptFile:
    return CorruptFile(f"This ONNX file is damaged: tensor '{name}' {what}.", details)


def tensor_storage(path: Path, buf: pw.Buffer, rec: TensorRecord, key: str,
                   external: ExternalData) -> tuple[str, tuple[int, ...], Storage]:
    """(dtype, shape, Storage) of a TensorProto; Unreadable for types we do not read."""
    dtype = _dtype(rec, key)
    shape = rec.shape
    if any(d < 0 for d in shape):
        raise damaged(key, "has a negative size", f"{key!r}: dims {list(shape)}")
    nbytes = expected_nbytes(shape, dtype)
    if rec.data_location == EXTERNAL:
        return dtype, shape, external.storage(key, rec.external, dtype, nbytes)
    if rec.raw is not None:
        if rec.raw.value != nbytes:
            raise damaged(key, "holds a different number of bytes than its shape and type need",
                          f"{key!r}: raw_data {rec.raw.value} bytes, shape {shape} x {dtype}")
        return dtype, shape, Storage(path, key, rec.raw.start, nbytes, dtype)
    count, per = typed_count(buf, rec), 2 if dtype.startswith("complex") else 1
    if count != per * prod(shape):
        raise damaged(key, "holds a different number of values than its shape needs",
                      f"{key!r}: {count} values, shape {shape}")
    return dtype, shape, Storage(path, key, rec.tag_pos, nbytes, dtype, encoding=TYPED_ENCODING)


def _dtype(rec: TensorRecord, key: str) -> str:
    dtype = ONNX_DTYPES.get(rec.data_type)
    if dtype is None:
        kind = ONNX_TYPE_NAMES.get(rec.data_type, f"type {rec.data_type}")
        raise Unreadable(f"The tensor '{key}' holds {kind} values, which this app does not "
                         "read; it was left out.")
    return dtype


def found_storage(path: Path, buf: pw.Buffer, found: Found,
                  external: ExternalData) -> tuple[str, tuple[int, ...], Storage]:
    if found.kind == "tensor":
        assert found.record is not None
        return tensor_storage(path, buf, found.record, found.name, external)
    if found.kind == "sparse":
        return _sparse_storage(path, buf, found)
    return _attribute_storage(path, buf, found)


# ---- Constant value_float(s) / value_int(s) -------------------------------------------------

def _attribute_values(buf: pw.Buffer, attr: pw.Field) -> tuple[str, list[pw.Field]]:
    parts = sub_fields(buf, attr)
    names = [pw.text(buf, f) for f in parts if f.number == 1]
    number = CONSTANT_VALUES.get(names[-1] if names else "")
    fields = [f for f in parts if f.number == number]
    name = names[-1] if names else ""
    if number in (A_F, A_I):
        fields = fields[-1:]  # a scalar field: the last one wins, as in protobuf
    return name, fields


def _attribute_storage(path: Path, buf: pw.Buffer,
                       found: Found) -> tuple[str, tuple[int, ...], Storage]:
    name, fields = _attribute_values(buf, found.where)
    floats = name in ("value_float", "value_floats")
    dtype = "float32" if floats else "int64"
    if floats:
        count = sum((f.end - f.start) // 4 if f.wire == pw.LEN else 1 for f in fields)
    else:
        count = sum(pw.count_varints(bytes(buf[f.start:f.end])) if f.wire == pw.LEN else 1
                    for f in fields)
    shape = () if name in ("value_float", "value_int") else (count,)
    nbytes = count * itemsize(dtype)
    plain = floats and len(fields) == 1 and (fields[0].end - fields[0].start) == nbytes
    if plain:  # little-endian float32 bytes in place: no decoding needed
        return dtype, shape, Storage(path, found.name, fields[0].start, nbytes, dtype)
    return dtype, shape, Storage(path, found.name, found.where.tag_pos, nbytes, dtype,
                                 encoding=ATTRIBUTE_ENCODING)


def decode_attribute(storage: Storage) -> bytes:
    try:
        with mapped(storage.path) as buf:
            attr = pw.field_at(buf, storage.offset, len(buf))
            name, fields = _attribute_values(buf, attr)
            if name in ("value_float", "value_floats"):
                data = pw.repeated_fixed(buf, fields, 4)
            else:
                values = pw.repeated_varints(buf, fields)
                data = struct.pack(f"<{len(values)}q", *(pw.signed64(v) for v in values))
    except (pw.WireError, struct.error) as exc:
        raise CorruptFile(f"The values of tensor '{storage.key}' in this ONNX file are damaged.",
                          str(exc)) from None
    if len(data) != storage.nbytes:
        raise CorruptFile(f"The values of tensor '{storage.key}' in this ONNX file changed or are "
                          "damaged.", f"decoded {len(data)} bytes, expected {storage.nbytes}")
    return data


# ---- sparse tensors ------------------------------------------------------------------------

def _sparse_parts(buf: pw.Buffer, outer: pw.Field) -> tuple[TensorRecord, TensorRecord, list[int]]:
    values = indices = None
    dims: list[pw.Field] = []
    for f in sub_fields(buf, outer):
        if f.number == 1:
            values = parse_tensor(buf, f)
        elif f.number == 2:
            indices = parse_tensor(buf, f)
        elif f.number == 3:
            dims.append(f)
    if values is None or indices is None:
        raise pw.WireError(f"the sparse tensor at byte {outer.tag_pos} lacks values or indices")
    return values, indices, [pw.signed64(d) for d in pw.repeated_varints(buf, dims)]


def _sparse_storage(path: Path, buf: pw.Buffer,
                    found: Found) -> tuple[str, tuple[int, ...], Storage]:
    values, indices, dims = _sparse_parts(buf, found.where)
    name = found.name
    if EXTERNAL in (values.data_location, indices.data_location):
        raise Unreadable(f"The sparse tensor '{name}' keeps its values in another file, which "
                         "this app does not read for sparse tensors; it was left out.")
    dtype = _dtype(values, name)
    nnz = prod(values.shape)
    if (any(d < 0 for d in dims) or len(values.shape) != 1 or indices.data_type != INT64
            or indices.shape not in ((nnz,), (nnz, len(dims)))):
        raise damaged(name, "is a sparse tensor whose values, indices and shape do not fit",
                      f"dims {dims}, values {values.shape}, indices {indices.shape} "
                      f"(type {indices.data_type})")
    no_external = ExternalData(path)
    tensor_storage(path, buf, values, name, no_external)  # the value/index counts must add up
    tensor_storage(path, buf, indices, name, no_external)
    shape = tuple(dims)
    return dtype, shape, Storage(path, name, found.where.tag_pos, expected_nbytes(shape, dtype),
                                 dtype, encoding=SPARSE_ENCODING)


def _record_bytes(buf: pw.Buffer, rec: TensorRecord, dtype: str) -> bytes:
    if rec.raw is not None:
        return bytes(buf[rec.raw.start:rec.raw.end])
    return typed_bytes(buf, rec, dtype)


def decode_sparse(storage: Storage) -> bytes:
    import numpy as np

    try:
        with mapped(storage.path) as buf:
            values, indices, dims = _sparse_parts(buf, pw.field_at(buf, storage.offset, len(buf)))
            raw_values = _record_bytes(buf, values, storage.dtype)
            raw_indices = _record_bytes(buf, indices, "int64")
    except (pw.WireError, struct.error, KeyError) as exc:
        raise CorruptFile(f"The values of sparse tensor '{storage.key}' in this ONNX file are "
                          "damaged.", str(exc)) from None
    size, numel, nnz = itemsize(storage.dtype), prod(dims), prod(values.shape)
    index = np.frombuffer(raw_indices, dtype="<i8")
    coordinates = len(indices.shape) == 2
    if (numel * size != storage.nbytes or len(raw_values) != nnz * size
            or index.size != nnz * (len(dims) if coordinates else 1)):
        raise CorruptFile(f"The sparse tensor '{storage.key}' in this ONNX file changed or is "
                          "damaged.", f"{nnz} values, {index.size} indices, dims {dims}")
    if coordinates:
        coords = index.reshape(nnz, len(dims))
        if nnz and ((coords < 0).any() or (coords >= np.array(dims)).any()):
            raise _bad_index(storage)
        index = np.ravel_multi_index(tuple(coords.T), dims) if nnz else index[:0]
    elif nnz and (index.min() < 0 or index.max() >= numel):
        raise _bad_index(storage)
    dense = np.zeros((numel, size), dtype=np.uint8)
    dense[index] = np.frombuffer(raw_values, dtype=np.uint8).reshape(nnz, size)
    return dense.tobytes()


def _bad_index(storage: Storage) -> CorruptFile:
    return CorruptFile(f"The sparse tensor '{storage.key}' in this ONNX file points outside its "
                       "shape; the file is damaged.", "index out of range")

"""Reader for ONNX models: lists the initializers without loading their data (no onnx import).

The file is memory-mapped and walked with a protobuf wire scanner: ModelProto -> graph (7) ->
initializer (5). Each initializer's bytes stay where they are: in raw_data, in an external data
file, or in a typed field decoded on demand (see `onnx_tensor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from core.errors import CorruptFile
from core.formats import protobuf_wire as pw
from core.formats.onnx_external import ExternalData
from core.formats.onnx_tensor import (
    EXTERNAL,
    ONNX_DTYPES,
    ONNX_TYPE_NAMES,
    TYPED_ENCODING,
    TensorRecord,
    decode_typed,
    expected_nbytes,
    mapped,
    parse_tensor,
    typed_count,
)
from core.formats.safetensors import make_sections
from core.model import Checkpoint, Finding, Storage, TensorInfo
from core.tensor_io import DECODERS

FORMAT = "onnx"
DECODERS[TYPED_ENCODING] = decode_typed

# ModelProto field number -> wire type; anything else at the top level is not an ONNX model
_MODEL_FIELDS = {1: pw.VARINT, 2: pw.LEN, 3: pw.LEN, 4: pw.LEN, 5: pw.VARINT, 6: pw.LEN,
                 7: pw.LEN, 8: pw.LEN, 14: pw.LEN, 20: pw.LEN, 25: pw.LEN, 26: pw.LEN}
_SNIFF_FIELDS = 64
_MAX_DOC = 4000


def sniff(path: Path, head: bytes) -> bool:
    """ONNX has no magic: the top-level fields must be ModelProto fields, up to a graph."""
    try:
        number, wire, _ = pw.read_tag(head, 0, len(head))
        if _MODEL_FIELDS.get(number) != wire:
            return False
        with mapped(Path(path)) as buf:
            return _has_graph(buf)
    except (OSError, ValueError):
        return False


def _has_graph(buf: pw.Buffer) -> bool:
    pos, end = 0, len(buf)
    for seen in range(_SNIFF_FIELDS):
        if pos >= end:
            return False
        number, wire, after = pw.read_tag(buf, pos, end)
        if _MODEL_FIELDS.get(number) != wire:
            return False
        if number == 7:
            if seen == 0:  # a graph with nothing before it must fit the file, else it is noise
                pw.read_value(buf, after, end, wire)
            return True
        pos = pw.read_value(buf, after, end, wire)[2]
    return False


@dataclass
class _Scan:
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def open(path: Path) -> Checkpoint:
    path = Path(path)
    external = ExternalData(path)
    findings: list[Finding] = []
    try:
        with mapped(path) as buf:
            scan = _Scan()
            _scan_model(buf, scan)
            tensors = _tensor_infos(path, buf, scan, external)
    except pw.WireError as exc:
        raise CorruptFile("This ONNX file is damaged: its contents end early or are scrambled.",
                          str(exc)) from None
    findings += [Finding(kind="structure", name=name, severity="info", message=why,
                         blocks_weights_only=False) for name, why in scan.skipped]
    findings += external.findings()
    sections, weights = make_sections(tensors)
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights,
                      metadata=scan.metadata, findings=findings)


def _scan_model(buf: pw.Buffer, scan: _Scan) -> None:
    meta, graphs = scan.metadata, []
    texts = {2: "producer_name", 3: "producer_version", 4: "domain", 6: "doc_string"}
    for f in pw.iter_fields(buf, 0, len(buf)):
        if f.number == 1 and f.wire == pw.VARINT:
            meta["ir_version"] = pw.signed64(f.value)
        elif f.number == 5 and f.wire == pw.VARINT:
            meta["model_version"] = pw.signed64(f.value)
        elif f.number in texts:
            meta[texts[f.number]] = pw.text(buf, f)[:_MAX_DOC]
        elif f.number == 7:
            graphs.append(f)
        elif f.number == 8:
            domain, version = _opset(buf, f)
            meta.setdefault("opset_import", {})[domain or "ai.onnx"] = version
        elif f.number == 14:
            key, value = _pair(buf, f)
            meta.setdefault("metadata_props", {})[key] = value
    if not graphs:
        raise CorruptFile("This ONNX file has no graph, so it holds no model.")
    for g in graphs:  # protobuf merges repeated occurrences of a message field
        _scan_graph(buf, g, scan)
    names = {t.name for t in scan.tensors}
    meta["inputs"] = [n for n in scan.inputs if n not in names]
    meta["outputs"] = scan.outputs


def _scan_graph(buf: pw.Buffer, graph: pw.Field, scan: _Scan) -> None:
    if graph.wire != pw.LEN:
        raise pw.WireError(f"the graph at byte {graph.tag_pos} is not a message")
    for f in pw.iter_fields(buf, graph.start, graph.end):
        if f.number == 5:
            scan.tensors.append(parse_tensor(buf, f))
        elif f.number == 15:
            scan.skipped.append((_sparse_name(buf, f), "Sparse initializers are listed "
                                 "but not read; this one was left out."))
        elif f.number in (11, 12):
            (scan.inputs if f.number == 11 else scan.outputs).append(_value_info_name(buf, f))
        elif f.number == 2:
            scan.metadata["graph_name"] = pw.text(buf, f)
        elif f.number == 10:
            scan.metadata["graph_doc_string"] = pw.text(buf, f)[:_MAX_DOC]


def _sub_fields(buf: pw.Buffer, outer: pw.Field) -> list[pw.Field]:
    if outer.wire != pw.LEN:
        raise pw.WireError(f"field {outer.number} at byte {outer.tag_pos} is not a message")
    return list(pw.iter_fields(buf, outer.start, outer.end))


def _opset(buf: pw.Buffer, outer: pw.Field) -> tuple[str, int]:
    domain, version = "", 0
    for f in _sub_fields(buf, outer):
        if f.number == 1:
            domain = pw.text(buf, f)
        elif f.number == 2 and f.wire == pw.VARINT:
            version = pw.signed64(f.value)
    return domain, version


def _pair(buf: pw.Buffer, outer: pw.Field) -> tuple[str, str]:
    found = {f.number: pw.text(buf, f) for f in _sub_fields(buf, outer) if f.number in (1, 2)}
    return found.get(1, ""), found.get(2, "")


def _value_info_name(buf: pw.Buffer, outer: pw.Field) -> str:
    names = [pw.text(buf, f) for f in _sub_fields(buf, outer) if f.number == 1]
    return names[-1] if names else ""


def _sparse_name(buf: pw.Buffer, outer: pw.Field) -> str:
    values = [f for f in _sub_fields(buf, outer) if f.number == 1]
    return parse_tensor(buf, values[-1]).name if values else ""


def _tensor_infos(path: Path, buf: pw.Buffer, scan: _Scan,
                  external: ExternalData) -> dict[str, TensorInfo]:
    tensors: dict[str, TensorInfo] = {}
    for rec in scan.tensors:
        if rec.name in tensors:
            raise CorruptFile(f"This ONNX file is damaged: it has two initializers named "
                              f"'{rec.name}'.", "duplicate initializer name")
        dtype = ONNX_DTYPES.get(rec.data_type)
        if dtype is None:
            kind = ONNX_TYPE_NAMES.get(rec.data_type, f"type {rec.data_type}")
            scan.skipped.append((rec.name, f"The initializer '{rec.name}' holds {kind} values, "
                                 "which this app does not read; it was left out."))
            continue
        storage = _storage(path, buf, rec, dtype, external)
        tensors[rec.name] = TensorInfo(name=rec.name, shape=rec.shape, dtype=dtype,
                                       storage=storage)
    return tensors


def _storage(path: Path, buf: pw.Buffer, rec: TensorRecord, dtype: str,
             external: ExternalData) -> Storage:
    shape = rec.shape
    if any(d < 0 for d in shape):
        raise CorruptFile(f"This ONNX file is damaged: tensor '{rec.name}' has a negative size.",
                          f"{rec.name!r}: dims {list(shape)}")
    nbytes = expected_nbytes(shape, dtype)
    if rec.data_location == EXTERNAL:
        return external.storage(rec.name, rec.external, dtype, nbytes)
    if rec.raw is not None:
        if rec.raw.value != nbytes:
            raise CorruptFile(
                f"This ONNX file is damaged: tensor '{rec.name}' holds a different number of "
                "bytes than its shape and type need.",
                f"{rec.name!r}: raw_data {rec.raw.value} bytes, shape {shape} x {dtype}")
        return Storage(path=path, key=rec.name, offset=rec.raw.start, nbytes=nbytes, dtype=dtype)
    count, per = typed_count(buf, rec), 2 if dtype.startswith("complex") else 1
    if count != per * prod(shape):
        raise CorruptFile(
            f"This ONNX file is damaged: tensor '{rec.name}' holds a different number of values "
            "than its shape needs.", f"{rec.name!r}: {count} values, shape {shape}")
    return Storage(path=path, key=rec.name, offset=rec.tag_pos, nbytes=nbytes, dtype=dtype,
                   encoding=TYPED_ENCODING)


"""Where an ONNX model keeps its weights: initializers, sparse initializers, Constant nodes, and the
same again inside every subgraph (If/Loop/Scan bodies, any graph-valued attribute).

Nothing is decoded here: each find records the byte range of its protobuf field. Names are what a
user sees in Netron: an initializer's name, a Constant's output name, and inside a subgraph the
path of node labels and attribute names, e.g. `If_0/then_branch/weight`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.errors import CorruptFile
from core.formats import protobuf_wire as pw
from core.formats.onnx_tensor import ONNX_DTYPES, TensorRecord, parse_tensor

MAX_DEPTH = 32  # protobuf itself refuses deeper graphs (about 100 nested messages)
TENSOR, SPARSE, ATTRIBUTE = "tensor", "sparse", "attribute"
# AttributeProto field numbers
A_NAME, A_F, A_I, A_T, A_G, A_FLOATS, A_INTS, A_GRAPHS, A_SPARSE = 1, 2, 3, 5, 6, 7, 8, 11, 22
# first byte of a `g`/`graphs` tag, written minimally or as an over-long varint (protobuf takes both)
_GRAPH_TAG_BYTES = [bytes([key]) for n in (A_G, A_GRAPHS) for key in (n << 3 | 2, 0x80 | n << 3 | 2)]
CONSTANT_VALUES = {"value": A_T, "sparse_value": A_SPARSE, "value_float": A_F,
                    "value_floats": A_FLOATS, "value_int": A_I, "value_ints": A_INTS}


@dataclass
class Found:
    """One tensor the graph holds: `kind` says how `where` (its protobuf field) is to be read."""

    name: str
    kind: str  # TENSOR: a TensorProto (record), SPARSE: a SparseTensorProto, ATTRIBUTE: f/i/floats/ints
    where: pw.Field
    record: TensorRecord | None = None
    constant: bool = False  # from a Constant node (small ones are grouped apart)
    attribute: str = ""  # for ATTRIBUTE: which Constant attribute (value_float, value_ints, ...)


@dataclass
class GraphScan:
    found: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # top-level graph only
    outputs: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    nodes: int = 0
    constant_nodes: int = 0
    subgraphs: int = 0


def scan_graph(buf: pw.Buffer, graph: pw.Field, scan: GraphScan, prefix: str = "",
               depth: int = 0) -> None:
    """Record every tensor of `graph` and, recursively, of the graphs its nodes hold."""
    if depth > MAX_DEPTH:
        raise CorruptFile("This ONNX file is damaged: its graphs are nested too deeply.",
                          f"more than {MAX_DEPTH} levels of subgraphs")
    if graph.wire != pw.LEN:
        raise pw.WireError(f"the graph at byte {graph.tag_pos} is not a message")
    ops: Counter[str] = Counter()
    for f in pw.iter_fields(buf, graph.start, graph.end):
        if f.number == 5:
            rec = parse_tensor(buf, f)
            scan.found.append(Found(prefix + rec.name, TENSOR, f, rec))
        elif f.number == 15:
            scan.found.append(Found(prefix + sparse_name(buf, f), SPARSE, f))
        elif f.number == 1:
            _scan_node(buf, f, scan, prefix, depth, ops)
        elif depth == 0 and f.number in (11, 12):
            (scan.inputs if f.number == 11 else scan.outputs).append(value_info(buf, f))
        elif depth == 0 and f.number == 2:
            scan.meta["graph_name"] = pw.text(buf, f)
        elif depth == 0 and f.number == 10:
            scan.meta["graph_doc_string"] = pw.text(buf, f)[:4000]


def _scan_node(buf: pw.Buffer, node: pw.Field, scan: GraphScan, prefix: str, depth: int,
               ops: Counter[str]) -> None:
    outputs: list[str] = []
    name = op_type = domain = ""
    attributes: list[pw.Field] = []
    for f in sub_fields(buf, node):
        if f.number == 2:
            outputs.append(pw.text(buf, f))
        elif f.number == 3:
            name = pw.text(buf, f)
        elif f.number == 4:
            op_type = pw.text(buf, f)
        elif f.number == 7:
            domain = pw.text(buf, f)
        elif f.number == 5:
            attributes.append(f)
    scan.nodes += 1
    label = name or f"{op_type or 'node'}_{ops[op_type]}"
    ops[op_type] += 1
    is_constant = op_type == "Constant" and domain in ("", "ai.onnx")
    if is_constant:
        scan.constant_nodes += 1
    for attr in attributes:
        if not is_constant and not _may_hold_graph(buf, attr):
            continue
        attr_name, values = _attribute(buf, attr)
        if is_constant and attr_name in CONSTANT_VALUES:
            _constant(buf, scan, prefix + (outputs[0] if outputs else label), attr_name, attr, values)
        for i, g in enumerate(values.get(A_GRAPHS, [])):
            scan.subgraphs += 1
            scan_graph(buf, g, scan, f"{prefix}{label}/{attr_name}/{i}/", depth + 1)
        for g in values.get(A_G, []):
            scan.subgraphs += 1
            scan_graph(buf, g, scan, f"{prefix}{label}/{attr_name}/", depth + 1)


def _may_hold_graph(buf: pw.Buffer, attr: pw.Field) -> bool:
    """False only when no byte of the attribute could be the tag of `g` or `graphs`: then it
    cannot hold a subgraph and need not be parsed (most attributes of a large graph)."""
    payload = bytes(buf[attr.start:attr.end])
    return any(tag in payload for tag in _GRAPH_TAG_BYTES)


def _attribute(buf: pw.Buffer, attr: pw.Field) -> tuple[str, dict[int, list[pw.Field]]]:
    name, values = "", {}
    for f in sub_fields(buf, attr):
        if f.number == A_NAME:
            name = pw.text(buf, f)
        else:
            values.setdefault(f.number, []).append(f)
    return name, values


def _constant(buf: pw.Buffer, scan: GraphScan, name: str, attr_name: str, attr: pw.Field,
              values: dict[int, list[pw.Field]]) -> None:
    number = CONSTANT_VALUES[attr_name]
    fields = values.get(number, [])
    if number in (A_FLOATS, A_INTS):
        scan.found.append(Found(name, ATTRIBUTE, attr, constant=True, attribute=attr_name))
    elif not fields:
        scan.skipped.append((name, f"The Constant '{name}' has no {attr_name}; it was left out."))
    elif number == A_T:
        scan.found.append(Found(name, TENSOR, fields[-1], parse_tensor(buf, fields[-1]), True))
    elif number == A_SPARSE:
        scan.found.append(Found(name, SPARSE, fields[-1], constant=True))
    else:
        scan.found.append(Found(name, ATTRIBUTE, attr, constant=True, attribute=attr_name))


def sub_fields(buf: pw.Buffer, outer: pw.Field) -> list[pw.Field]:
    if outer.wire != pw.LEN:
        raise pw.WireError(f"field {outer.number} at byte {outer.tag_pos} is not a message")
    return list(pw.iter_fields(buf, outer.start, outer.end))


def sparse_name(buf: pw.Buffer, outer: pw.Field) -> str:
    values = [f for f in sub_fields(buf, outer) if f.number == 1]
    return parse_tensor(buf, values[-1]).name if values else ""


def value_info(buf: pw.Buffer, outer: pw.Field) -> dict[str, Any]:
    """A graph input/output: name, element type and shape with symbolic dims kept as names."""
    info: dict[str, Any] = {"name": "", "type": "unknown", "dtype": None, "shape": None}
    for f in sub_fields(buf, outer):
        if f.number == 1:
            info["name"] = pw.text(buf, f)
        elif f.number == 2:
            _type_proto(buf, f, info)
    return info


def _type_proto(buf: pw.Buffer, outer: pw.Field, info: dict[str, Any]) -> None:
    kinds = {1: "tensor", 4: "sequence", 5: "map", 8: "sparse_tensor", 9: "optional"}
    for f in sub_fields(buf, outer):
        if f.number not in kinds:
            continue
        info["type"] = kinds[f.number]
        if f.number in (1, 8):
            for g in sub_fields(buf, f):
                if g.number == 1 and g.wire == pw.VARINT:
                    code = g.value & 0xFFFFFFFF
                    info["dtype"] = ONNX_DTYPES.get(code, "string" if code == 8 else f"type {code}")
                elif g.number == 2:
                    info["shape"] = [_dim(buf, d) for d in sub_fields(buf, g) if d.number == 1]


def _dim(buf: pw.Buffer, outer: pw.Field) -> int | str | None:
    value: int | str | None = None
    for f in sub_fields(buf, outer):
        if f.number == 1 and f.wire == pw.VARINT:
            value = pw.signed64(f.value)
        elif f.number == 2:
            value = pw.text(buf, f)
    return value

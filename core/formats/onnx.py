"""Reader for ONNX models: lists every weight without loading its data (no onnx import).

The file is memory-mapped and walked with a protobuf wire scanner: ModelProto -> graph (7) ->
initializers, sparse initializers, Constant nodes, and the subgraphs of any node (see
`onnx_graph`). Each tensor's bytes stay where they are: in raw_data, in an external data file, or
in a field decoded on demand (see `onnx_tensor`, `onnx_values`). Constants with fewer than
SMALL_CONSTANT elements that are scalars or integers (shapes, axes, epsilons) go to their own
section, "constants", so they do not drown the weights.
"""

from __future__ import annotations

from pathlib import Path

from core.dtypes import is_floating
from core.errors import CorruptFile
from core.formats import onnx_values
from core.formats import protobuf_wire as pw
from core.formats.onnx_external import ExternalData
from core.formats.onnx_graph import GraphScan, scan_graph, sub_fields
from core.formats.onnx_tensor import TYPED_ENCODING, decode_typed, mapped
from core.formats.safetensors import make_sections
from core.model import BUFFER, Checkpoint, Finding, Section, TensorInfo
from core.tensor_io import DECODERS

FORMAT = "onnx"
CONSTANTS = "constants"
SMALL_CONSTANT = 64  # elements
DECODERS[TYPED_ENCODING] = decode_typed
DECODERS[onnx_values.ATTRIBUTE_ENCODING] = onnx_values.decode_attribute
DECODERS[onnx_values.SPARSE_ENCODING] = onnx_values.decode_sparse

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


def open(path: Path) -> Checkpoint:
    path = Path(path)
    external = ExternalData(path)
    try:
        with mapped(path) as buf:
            scan = GraphScan()
            _scan_model(buf, scan)
            weights, constants = _tensor_infos(path, buf, scan, external)
    except pw.WireError as exc:
        raise CorruptFile("This ONNX file is damaged: its contents end early or are scrambled.",
                          str(exc)) from None
    findings = [Finding(kind="structure", name=name, severity="info", message=why,
                        blocks_weights_only=False) for name, why in scan.skipped]
    findings += external.findings()
    sections, weights_name = make_sections(weights) if weights else ({}, None)
    if constants:
        sections[CONSTANTS] = Section(CONSTANTS, tensors=constants)
    if not weights and not constants:
        findings.append(_no_weights(scan))
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights_name,
                      metadata=scan.meta, findings=findings)


def _no_weights(scan: GraphScan) -> Finding:
    if scan.skipped:
        why = (f"none of its {len(scan.skipped)} tensor(s) could be read (see the other notes), "
               "so nothing is listed")
    else:
        why = (f"its graph has {scan.nodes} node(s) and no initializers, Constant nodes or "
               "subgraph weights: the weights are not in this file")
    return Finding(kind="no-tensors", name="graph", severity="info", blocks_weights_only=False,
                   message=f"This ONNX file holds no weights: {why}.")


def _scan_model(buf: pw.Buffer, scan: GraphScan) -> None:
    meta, graphs = scan.meta, []
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
        scan_graph(buf, g, scan)
    names = {f.name for f in scan.found}
    meta["inputs"] = [i["name"] for i in scan.inputs if i["name"] not in names]
    meta["outputs"] = [o["name"] for o in scan.outputs]
    meta["graph_inputs"] = [i for i in scan.inputs if i["name"] not in names]
    meta["graph_outputs"] = scan.outputs
    meta["graph_nodes"] = scan.nodes
    meta["constant_nodes"] = scan.constant_nodes
    meta["subgraphs"] = scan.subgraphs


def _opset(buf: pw.Buffer, outer: pw.Field) -> tuple[str, int]:
    domain, version = "", 0
    for f in sub_fields(buf, outer):
        if f.number == 1:
            domain = pw.text(buf, f)
        elif f.number == 2 and f.wire == pw.VARINT:
            version = pw.signed64(f.value)
    return domain, version


def _pair(buf: pw.Buffer, outer: pw.Field) -> tuple[str, str]:
    found = {f.number: pw.text(buf, f) for f in sub_fields(buf, outer) if f.number in (1, 2)}
    return found.get(1, ""), found.get(2, "")


def _tensor_infos(path: Path, buf: pw.Buffer, scan: GraphScan, external: ExternalData
                  ) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
    """(weights, small constants) by name."""
    weights: dict[str, TensorInfo] = {}
    constants: dict[str, TensorInfo] = {}
    for found in scan.found:
        if found.name in weights or found.name in constants:
            raise CorruptFile(f"This ONNX file is damaged: it has two tensors named "
                              f"'{found.name}'.", "duplicate tensor name")
        try:
            dtype, shape, storage = onnx_values.found_storage(path, buf, found, external)
        except onnx_values.Unreadable as exc:
            scan.skipped.append((found.name, str(exc)))
            continue
        info = TensorInfo(name=found.name, shape=shape, dtype=dtype, storage=storage)
        if found.constant and _is_small_constant(info):
            constants[found.name] = TensorInfo(found.name, shape, dtype, storage, role=BUFFER)
        else:
            weights[found.name] = info
    return weights, constants


def _is_small_constant(info: TensorInfo) -> bool:
    """Shapes, axes, scalars: fewer than SMALL_CONSTANT elements, integer-valued or a scalar."""
    return info.numel < SMALL_CONSTANT and (not is_floating(info.dtype) or info.numel <= 1)

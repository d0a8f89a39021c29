"""Reader for GGUF files (llama.cpp), through the `gguf` package: llama.cpp's own parser, numpy only.

Opening reads the header, the key/value metadata and the tensor directory; tensor data stays in
the file. F32/F16/BF16/F64 and integer tensors are plain bytes read in place. Quantised tensors
(Q8_0, Q4_K, ...) are listed as float32 with `stored_as` naming their GGML type, and are
dequantised on read with `gguf.quants.dequantize` (registered as the "gguf-<TYPE>" decoders), so
stats, diff and convert see real values; convert's dtype option then picks the float type written.
"""

from __future__ import annotations

from collections import Counter
from math import prod
from pathlib import Path
from typing import Any

from core.errors import CheckpointError, CorruptFile, UnsupportedFormat
from core.model import Checkpoint, Finding, Storage, TensorInfo
from core.tensor_io import DECODERS, read_range

FORMAT = "gguf"
MAGIC = b"GGUF"
ENCODING_PREFIX = "gguf-"
PLAIN = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I8": "int8",
         "I16": "int16", "I32": "int32", "I64": "int64"}
MAX_LISTED_ARRAY = 16  # longer arrays (vocabularies, merges) are summarised in the metadata


def sniff(path: Path, head: bytes) -> bool:
    return head.startswith(MAGIC)


def gguf_package() -> Any:
    try:
        import gguf
    except ImportError:
        raise UnsupportedFormat("Reading GGUF files needs the 'gguf' package, which is not "
                                "installed: run 'pip install gguf'.") from None
    return gguf


def open(path: Path) -> Checkpoint:  # noqa: A001 - the reader interface
    from core.layout import build_sections

    gguf = gguf_package()
    path = Path(path)
    _check_version(path, gguf)
    try:
        reader = gguf.GGUFReader(path, "r")
        tensors, types = _tensors(path, reader, gguf)
        metadata = _metadata(reader, types, gguf)
    except CheckpointError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError,
            NotImplementedError, OSError) as exc:
        raise CorruptFile("This GGUF file is damaged or truncated: its header or tensor list "
                          "cannot be read.", f"{type(exc).__name__}: {exc}") from None
    sections, weights = build_sections(tensors)
    findings = [] if tensors else [_no_tensors(metadata)]
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights,
                      metadata=metadata, findings=findings)


def _no_tensors(metadata: dict[str, Any]) -> Finding:
    keys = len(metadata["kv"]) + len(metadata["hyperparameters"])
    vocabulary = any(k.startswith("tokenizer.") for k in metadata["kv"])
    kind = " (a vocabulary-only file, as llama.cpp's tokenizer tools use)" if vocabulary else ""
    return Finding(kind="no-tensors", name="tensors", severity="info", blocks_weights_only=False,
                   message=f"This GGUF file holds no weights: it has only metadata, {keys} "
                           f"key(s){kind}.")


def _check_version(path: Path, gguf: Any) -> None:
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CorruptFile("This GGUF file is truncated: it ends inside its header.")
    version = int.from_bytes(head[4:], "little")
    if version & 0xFFFF == 0:  # a big-endian file
        version = int.from_bytes(head[4:], "big")
    if version > gguf.GGUF_VERSION:
        raise UnsupportedFormat(f"This GGUF file is version {version}, newer than the installed "
                                f"'gguf' package reads (up to {gguf.GGUF_VERSION}); try a newer gguf.")


def _tensors(path: Path, reader: Any, gguf: Any) -> tuple[dict[str, TensorInfo], Counter[str]]:
    size = path.stat().st_size
    big = reader.byte_order == "S"
    tensors: dict[str, TensorInfo] = {}
    types: Counter[str] = Counter()
    for t in reader.tensors:
        kind = gguf.GGMLQuantizationType(t.tensor_type).name
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # numpy/PyTorch order
        nbytes = int(t.n_bytes)
        if t.data_offset + nbytes > size:
            raise CorruptFile(f"This GGUF file is truncated: tensor '{t.name}' ends past the end "
                              "of the file.", f"{t.name}: bytes {t.data_offset}..{t.data_offset + nbytes}"
                              f", file has {size}")
        types[kind] += 1
        if kind in PLAIN:
            dtype = PLAIN[kind]
            storage = Storage(path, t.name, int(t.data_offset), nbytes, dtype,
                              byteorder="big" if big else "little")
            tensors[t.name] = TensorInfo(t.name, shape, dtype, storage)
            continue
        encoding = ENCODING_PREFIX + kind
        DECODERS[encoding] = _dequantize
        storage = Storage(path, t.name, int(t.data_offset), prod(shape) * 4, "float32",
                          byteorder="big" if big else "little", encoding=encoding)
        tensors[t.name] = TensorInfo(t.name, shape, "float32", storage, stored_as=kind)
    return tensors, types


def _dequantize(storage: Storage) -> bytes:
    """The float32 values of one quantised tensor, exactly as gguf.quants.dequantize gives them."""
    import numpy as np

    gguf = gguf_package()
    kind = storage.encoding.removeprefix(ENCODING_PREFIX)
    qtype = gguf.GGMLQuantizationType[kind]
    if storage.byteorder != "little":
        raise CheckpointError(f"The tensor '{storage.key}' is quantised ({kind}) in a big-endian "
                              "GGUF file, which this app cannot dequantise.")
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    numel = storage.nbytes // 4
    if numel % block:
        raise CorruptFile(f"The tensor '{storage.key}' in this GGUF file is damaged: its size does "
                          f"not fill whole {kind} blocks.", f"{numel} values, block {block}")
    raw = read_range(storage.path, storage.offset, numel // block * type_size)
    try:
        values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype)
    except NotImplementedError:
        raise CheckpointError(f"The tensor '{storage.key}' is stored as {kind}, which the installed "
                              "'gguf' package cannot dequantise; try a newer gguf.") from None
    data = np.ascontiguousarray(values, dtype=np.float32).tobytes()
    if len(data) != storage.nbytes:
        raise CorruptFile(f"The tensor '{storage.key}' in this GGUF file could not be dequantised.",
                          f"got {len(data)} bytes, expected {storage.nbytes}")
    return data


def _metadata(reader: Any, types: Counter[str], gguf: Any) -> dict[str, Any]:
    kv: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        kv[name] = _value(field, gguf)
    arch = kv.get("general.architecture")
    prefix = f"{arch}." if isinstance(arch, str) else None
    hyper = {k.removeprefix(prefix): v for k, v in kv.items()
             if prefix and k.startswith(prefix)}
    rest = {k: v for k, v in kv.items() if not (prefix and k.startswith(prefix))}
    version = reader.fields["GGUF.version"].parts[0][0]
    return {"gguf_version": int(version), "architecture": arch, "model_name": kv.get("general.name"),
            "hyperparameters": hyper, "kv": rest, "ggml_types": dict(types.most_common()),
            "alignment": int(reader.alignment), "tensor_data_offset": int(reader.data_offset),
            "byteorder": "big" if reader.byte_order == "S" else "little"}


def _value(field: Any, gguf: Any) -> Any:
    main = field.types[0] if field.types else None
    if main == gguf.GGUFValueType.ARRAY:
        count = len(field.data)
        if count > MAX_LISTED_ARRAY:
            return f"<array of {count} {field.types[-1].name.lower()}>"
    value = field.contents()
    if isinstance(value, float):
        return float(f"{value:.7g}")  # float32 metadata: no long binary tails in reports
    return value

"""Reader for torch.export `.pt2` archives: lists weights and constants without loading or running them.

A `.pt2` file is a torch-style zip. For each program `<m>` (torch.export.load uses "model"):
`models/<m>.json` (the serialized graph and its signature), `data/weights/<m>_weights_config.json`
and `data/constants/<m>_constants_config.json` (name -> record + tensor metadata), raw storage bytes
in `data/weights/weight_N` / `data/constants/tensor_N`, and `data/sample_inputs/<m>.pt`.
Entries with `use_pickle` (tensor subclasses, custom or opaque objects) and the sample inputs are
pickles that torch.export.load would unpickle, possibly with `weights_only=False`; we only scan them.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import replace
from math import prod
from pathlib import Path
from typing import Any

from core.dtypes import itemsize
from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import pickle_vm
from core.formats.pickle_ops import tensor_info as checked_tensor_info
from core.formats.torch_zip import parse_storage_id
from core.formats.zip_archive import ZipArchive, is_zip, open_archive
from core.formats.zip_archive import first_entry_name as first_entry
from core.model import BUFFER, PARAMETER, Checkpoint, Finding, Storage, TensorInfo

FORMAT = "pt2"
CONFIG_LIMIT = 1 << 28  # json records (graph, configs) read into memory: 256 MiB
NESTED_LIMIT = 1 << 28  # pickled entries / sample inputs read into memory to be scanned
STRIDED = 7  # torch._export.serde.schema.Layout.Strided

# torch._export.serde.schema.ScalarType -> torch dtype name
SCALAR_TYPES: dict[int, str] = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
    8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16",
    28: "uint16", 29: "float8_e4m3fn", 30: "float8_e5m2", 31: "float8_e4m3fnuz",
    32: "float8_e5m2fnuz", 33: "float8_e8m0fnu", 34: "uint32", 35: "uint64",
}
_DAMAGED_START = re.compile(r"[^/]+/(data/weights/|data/constants/|models/|archive_format)")
_SYMBOL = re.compile(r"Symbol\('([^']*)'[^)]*\)")


def _damaged(reason: str, details: str | None = None) -> CorruptFile:
    return CorruptFile(f"This .pt2 file is damaged: {reason}.", details)


def sniff(path: Path, head: bytes) -> bool:
    """A torch-style zip whose `archive_format` record says "pt2" (torch's own test)."""
    if not is_zip(head):
        return False
    try:
        archive = open_archive(Path(path))
        rec = archive.get("archive_format")
        return rec is not None and rec.size < 16 and archive.read("archive_format") == b"pt2"
    except CheckpointError:  # damaged: claim it when it starts the way torch.export.save writes
        return _DAMAGED_START.match(first_entry(head)) is not None


def open(path: Path) -> Checkpoint:
    from core.layout import build_sections

    path = Path(path)
    archive = open_archive(path)
    findings: list[Finding] = []
    tree: dict[str, dict[str, TensorInfo]] = {}
    programs: dict[str, Any] = {}
    for name in program_names(archive):
        program = read_json(archive, f"models/{name}.json")
        roles = signature_roles(program)
        tensors = read_payload(archive, name, "weights", roles, findings)
        tensors.update(read_payload(archive, name, "constants", roles, findings))
        findings += scan_sample_inputs(archive, name)
        tree[name] = tensors
        programs[name] = program_summary(program)
    sections, weights = build_sections({k: v for k, v in tree.items() if v})
    metadata = {"pt2": {"archive_version": _text(archive, "archive_version"),
                        "programs": programs}, **_preprocessing(archive)}
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights,
                      metadata=metadata, findings=findings)


def program_names(archive: ZipArchive) -> list[str]:
    """Programs in the archive, "model" first (the one torch.export.load returns)."""
    names = [n[len("models/"):-len(".json")] for n in archive.names()
             if n.startswith("models/") and n.endswith(".json") and n.count("/") == 1]
    if not names:
        raise _damaged("it holds no exported program", "no models/<name>.json record")
    return sorted(names, key=lambda n: n != "model")


def read_json(archive: ZipArchive, name: str) -> Any:
    raw = archive.read(name, limit=CONFIG_LIMIT)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _damaged(f"the entry '{name}' is not valid JSON", f"{type(exc).__name__}: {exc}") \
            from None


def _text(archive: ZipArchive, name: str) -> str | None:
    rec = archive.get(name)
    if rec is None or rec.size > 1024:
        return None
    return archive.read(name).decode("utf-8", "replace").strip()


def signature_roles(program: dict[str, Any]) -> dict[str, str]:
    """Tensor name -> role, from the graph signature's input specs."""
    specs = program.get("graph_module", {}).get("signature", {}).get("input_specs", [])
    roles: dict[str, str] = {}
    for spec in specs:
        if "parameter" in spec:
            roles[spec["parameter"]["parameter_name"]] = PARAMETER
        elif "buffer" in spec:
            roles[spec["buffer"]["buffer_name"]] = BUFFER
        elif "tensor_constant" in spec:
            roles[spec["tensor_constant"]["tensor_constant_name"]] = BUFFER
    return roles


def read_payload(archive: ZipArchive, model: str, kind: str, roles: dict[str, str],
                 findings: list[Finding]) -> dict[str, TensorInfo]:
    """The tensors a weights/constants config lists; pickled entries are scanned, not loaded."""
    config_name = f"data/{kind}/{model}_{kind}_config.json"
    if not archive.has(config_name):
        if archive.has(f"data/{kind}/{model}.pt"):
            findings += scan_nested_pickle(archive, f"data/{kind}/{model}.pt")
            return {}
        raise _damaged(f"the entry '{config_name}' is missing")
    config = read_json(archive, config_name).get("config", {})
    storages: dict[tuple[str, str], Storage] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, meta in config.items():
        record = f"data/{kind}/{meta['path_name']}"
        if meta.get("use_pickle"):
            findings += scan_nested_pickle(archive, record)
        tensor_meta = meta.get("tensor_meta")
        if tensor_meta is None:
            continue  # a custom or opaque object, not a tensor
        role = roles.get(name, PARAMETER if meta.get("is_param") else BUFFER)
        storage = None if meta.get("use_pickle") else _storage(archive, record, tensor_meta, storages)
        tensors[name] = tensor_info(name, tensor_meta, storage, role)
    return tensors


def _storage(archive: ZipArchive, record: str, tensor_meta: dict[str, Any],
             cache: dict[tuple[str, str], Storage]) -> Storage:
    """The whole raw record as one storage of the tensor's dtype (torch reads it the same way)."""
    dtype = _dtype(tensor_meta)
    if (record, dtype) not in cache:
        nbytes = archive.record(record).size
        if nbytes % itemsize(dtype):
            raise _damaged(f"the entry '{record}' does not hold whole {dtype} values",
                           f"{nbytes} bytes, element size {itemsize(dtype)}")
        cache[(record, dtype)] = archive.storage(record, dtype, nbytes)
    return cache[(record, dtype)]


def tensor_info(name: str, meta: dict[str, Any], storage: Storage | None, role: str) -> TensorInfo:
    """A TensorInfo from a config's tensor_meta, checked to lie inside its storage."""
    shape = tuple(_int(s, name) for s in meta["sizes"])
    stride = tuple(_int(s, name) for s in meta["strides"])
    offset = _int(meta.get("storage_offset", {"as_int": 0}), name)
    dtype, grad = _dtype(meta), meta.get("requires_grad") is True
    empty = storage is not None and storage.nbytes == 0 and prod(shape) > 0  # a fake tensor
    if storage is None or empty or meta.get("layout", STRIDED) != STRIDED:
        return TensorInfo(name, shape, dtype, None, offset, stride, role, grad)
    try:
        info = checked_tensor_info(storage, offset, shape, stride, dtype, grad)
    except CorruptFile as exc:
        raise _damaged(f"the tensor '{name}' points outside its stored data", exc.details) \
            from None
    return replace(info, name=name, role=role)


def _dtype(meta: dict[str, Any]) -> str:
    code = meta.get("dtype")
    if code not in SCALAR_TYPES:
        raise _damaged("a tensor has an unknown data type", f"ScalarType {code!r}")
    return SCALAR_TYPES[code]


def _int(value: dict[str, Any], name: str) -> int:
    number = value.get("as_int") if isinstance(value, dict) else None
    if type(number) is not int or number < 0:
        raise _damaged(f"the tensor '{name}' has a size that is not a plain number",
                       f"{value!r:.200}")
    return value["as_int"]


def scan_sample_inputs(archive: ZipArchive, model: str) -> list[Finding]:
    record = f"data/sample_inputs/{model}.pt"
    return scan_nested_pickle(archive, record) if archive.has(record) else []


def scan_nested_pickle(archive: ZipArchive, record: str) -> list[Finding]:
    """Findings for a pickle (or torch.save zip) that torch.export.load would unpickle."""
    where = f"{archive.folder}/{record}"
    try:
        data = archive.read(record, limit=NESTED_LIMIT)
        if is_zip(data):
            data, where = _inner_data_pkl(data, where)
        return pickle_vm.load(data, where=where, persistent_load=_any_storage(where)).findings
    except UnsafeContent as exc:  # damaged, and it names code it would run: report that code
        return list(exc.findings)
    except CheckpointError:
        return [Finding(kind="structure", name=record, severity="unknown", where=where,
                        message=f"The entry '{record}', which loading the model would unpickle, "
                                "could not be checked, so treat this file as untrusted.")]


def _inner_data_pkl(data: bytes, where: str) -> tuple[bytes, str]:
    """data.pkl of a torch.save zip held inside the archive (read from memory)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            folder = inner.infolist()[0].filename.partition("/")[0]
            info = inner.getinfo(f"{folder}/data.pkl")
            if info.file_size > NESTED_LIMIT:  # a zip bomb would inflate past what we read
                raise CorruptFile("It is too large to check.", f"{info.file_size} bytes")
            return inner.read(info), f"{where}/{folder}/data.pkl"
    except (zipfile.BadZipFile, KeyError, IndexError, OSError, ValueError, zlib.error) as exc:
        raise CorruptFile("It is not a readable torch.save archive.", repr(exc)) from None


def _any_storage(where: str) -> Any:
    """persistent_load for scanning only: a stand-in storage (its tensors are not listed)."""
    def persistent_load(pid: Any) -> Storage:
        key, dtype, numel, _ = parse_storage_id(pid)
        return Storage(Path(where), key, 0, numel * itemsize(dtype), dtype)

    return persistent_load


def program_summary(program: dict[str, Any]) -> dict[str, Any]:
    """Small JSON-friendly view of a program's user inputs/outputs and dynamic dimensions."""
    module = program.get("graph_module", {})
    values = module.get("graph", {}).get("tensor_values", {})
    signature = module.get("signature", {})
    inputs = [_argument(s["user_input"]["arg"], values)
              for s in signature.get("input_specs", []) if "user_input" in s]
    outputs = [_argument(s["user_output"]["arg"], values)
               for s in signature.get("output_specs", []) if "user_output" in s]
    ranges = {str(k): [v.get("min_val"), v.get("max_val")]
              for k, v in program.get("range_constraints", {}).items()}
    version = program.get("schema_version", {})
    return {"inputs": inputs, "outputs": outputs, "dynamic_dims": ranges,
            "torch_version": program.get("torch_version"),
            "schema_version": f"{version.get('major')}.{version.get('minor')}"}


def _argument(arg: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    if "as_tensor" not in arg:
        kind = next(iter(arg), "unknown")
        return {"kind": kind.removeprefix("as_")}
    name = arg["as_tensor"]["name"]
    meta = values.get(name, {})
    shape = [_dim(s) for s in meta.get("sizes", [])]
    return {"name": name, "kind": "tensor", "shape": shape,
            "dtype": SCALAR_TYPES.get(meta.get("dtype"), "unknown")}


def _dim(size: dict[str, Any]) -> int | str:
    if "as_int" in size:
        return size["as_int"]
    expr = size.get("as_expr", {}).get("expr_str", "?")
    return _SYMBOL.sub(r"\1", str(expr))


def _preprocessing(archive: ZipArchive) -> dict[str, Any]:
    from core.inputs.preprocess import read_extra  # only for this file type: keeps import time low

    return read_extra(archive)

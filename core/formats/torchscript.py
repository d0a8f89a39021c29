"""Reader for TorchScript archives (torch.jit.save): the module's weights, read as data, never run.

A TorchScript archive is a torch-style zip holding `data.pkl` (the module object tree: one
`__torch__.<path>.<Class>` object per module whose BUILD state maps attribute names to values, with
tensors stored in `data/<key>`), `constants.pkl` (tensors in `constants/<key>`), `code/` (the
compiled classes as Python-like source), `version` and `byteorder`. torch.jit.load compiles `code/`
and may run a class's `__setstate__`; we only read the pickles as data and the source's
`__parameters__ = [...]` / `__buffers__ = [...]` lines as text, to tell parameters from buffers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.dtypes import itemsize
from core.errors import CheckpointError, CorruptFile
from core.formats import pickle_vm
from core.formats.torch_zip import parse_storage_id
from core.formats.zip_archive import ZipArchive, is_zip, open_archive, read_byteorder
from core.formats.zip_archive import first_entry_name as first_entry
from core.inputs.preprocess import read_extra
from core.model import (
    BUFFER,
    PARAMETER,
    UNKNOWN,
    Checkpoint,
    Finding,
    Opaque,
    Section,
    Storage,
    TensorInfo,
)

FORMAT = "torchscript"
CODE_LIMIT = 1 << 26  # one code/*.py record read into memory: 64 MiB
MAX_DEPTH = 1000  # module nesting we follow
MAX_MODULES = 1_000_000  # module visits (a shared submodule counts once per name)
_CLASS = re.compile(r"class\s+(\w+)\s*(?:\(([^)]*)\))?\s*:")
_NAMES = re.compile(r"  __(parameters|buffers)__ = \[(.*)\]\s*$")  # class-body level only
_DAMAGED_START = re.compile(r"[^/]+/(data|constants)/\d+$")  # torch.save starts with data.pkl
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class ClassInfo:
    """What a class's source says about its attributes (by text, never by running it)."""

    is_module: bool = False
    known: bool = True  # False: no source found; tensors get their role from their names
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)


def sniff(path: Path, head: bytes) -> bool:
    """A torch-style zip with `data.pkl`, `constants.pkl` and `code/` records."""
    if not is_zip(head):
        return False
    try:
        archive = open_archive(Path(path))
    except CheckpointError:  # damaged: claim it when it starts the way torch.jit.save writes
        return _DAMAGED_START.match(first_entry(head)) is not None
    has_code = any(n.lower().startswith("code/") for n in archive.names())
    return has_code and archive.has("data.pkl") and archive.has("constants.pkl")


def is_script_class(qualname: str) -> bool:
    """Globals a TorchScript archive is expected to name: its own compiled classes."""
    return qualname.startswith("__torch__.")


def parse_classes(source: str, module: str) -> dict[str, ClassInfo]:
    """`__torch__.<module>.<Class>` -> ClassInfo from one code record, by its text lines."""
    classes: dict[str, ClassInfo] = {}
    current: ClassInfo | None = None
    for line in source.splitlines():
        match = _CLASS.match(line)
        if match:
            bases = (match.group(2) or "").replace(" ", "").split(",")
            current = classes.setdefault(f"{module}.{match.group(1)}",
                                         ClassInfo(is_module="Module" in bases))
            continue
        names = _NAMES.match(line) if current is not None else None
        if names and current is not None:
            values = [_unescape(v) for v in _QUOTED.findall(names.group(2))]
            setattr(current, names.group(1), values)
        elif line and not line[0].isspace():
            current = None  # a top-level def or statement ends the class
    return classes


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def read_classes(archive: ZipArchive, qualnames: set[str]) -> dict[str, ClassInfo]:
    """ClassInfo for each `__torch__` class the pickle names, from `code/<module path>.py`."""
    classes: dict[str, ClassInfo] = {}
    for module in sorted({q.rpartition(".")[0] for q in qualnames if is_script_class(q)}):
        record = "code/" + module.replace(".", "/") + ".py"
        if not archive.has(record):
            continue
        source = archive.read(record, limit=CODE_LIMIT).decode("utf-8", "replace")
        classes.update(parse_classes(source, module))
    return classes


def module_tensors(root: Any, classes: dict[str, ClassInfo]) -> tuple[dict[str, TensorInfo],
                                                                      dict[str, TensorInfo]]:
    """(state_dict-like {name: TensorInfo}, other tensor attributes) of the root module object.

    Like nn.Module.state_dict, a submodule reachable by two names is listed under both.
    """
    state: dict[str, TensorInfo] = {}
    extra: dict[str, TensorInfo] = {}
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    for _ in range(MAX_MODULES):
        if not stack:
            return state, extra
        prefix, obj, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CorruptFile("This TorchScript file nests its modules too deeply to read safely.",
                              f"more than {MAX_DEPTH} levels at {prefix!r:.200}")
        children = _visit_module(prefix, obj, classes, state, extra)
        stack.extend((f"{prefix}{name}.", child, depth + 1) for name, child in reversed(children))
    raise CorruptFile("This TorchScript file has too many modules to read safely.",
                      f"more than {MAX_MODULES} module objects")


def _visit_module(prefix: str, obj: Opaque, classes: dict[str, ClassInfo],
                  state: dict[str, TensorInfo], extra: dict[str, TensorInfo]) -> list[tuple[str, Any]]:
    """Adds one module's own parameters then buffers (torch's state_dict order); returns children."""
    attrs = obj.state if isinstance(obj.state, dict) else {}
    info = classes.get(obj.qualname) or ClassInfo(known=False)
    own = _own_tensors(attrs, info)
    for name, role in own.items():
        state[f"{prefix}{name}"] = replace(attrs[name], name=f"{prefix}{name}", role=role)
    children = []
    for name, value in attrs.items():
        if name in own or name in info.parameters or name in info.buffers:
            continue
        if _is_module(value, classes):
            children.append((name, value))
        else:
            _collect(f"{prefix}{name}", value, extra)
    if not isinstance(obj.state, dict) and obj.state is not None:
        _collect(f"{prefix}__getstate__", obj.state, extra)  # a class with __setstate__
    return children


def _own_tensors(attrs: dict[str, Any], info: ClassInfo) -> dict[str, str]:
    """Attribute name -> role for the module's parameters, then its buffers, in slot order."""
    if not info.known:
        return {n: UNKNOWN for n, v in attrs.items() if isinstance(v, TensorInfo)}
    own = {n: PARAMETER for n in attrs if n in info.parameters and isinstance(attrs[n], TensorInfo)}
    own.update({n: BUFFER for n in attrs if n in info.buffers and isinstance(attrs[n], TensorInfo)})
    return own


def _is_module(value: Any, classes: dict[str, ClassInfo]) -> bool:
    if not isinstance(value, Opaque) or not is_script_class(value.qualname):
        return False
    info = classes.get(value.qualname)
    return info.is_module if info else isinstance(value.state, dict) and "training" in value.state


def _collect(path: str, value: Any, out: dict[str, TensorInfo]) -> None:
    """Tensors inside a non-module attribute (lists, dicts, script objects), by dotted path.

    A container shared by several attributes is listed under the first path only.
    """
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    seen: set[int] = set()
    while stack:
        path, node, depth = stack.pop()
        if isinstance(node, TensorInfo):
            out[path] = replace(node, name=path, role=UNKNOWN)
            continue
        if depth > MAX_DEPTH or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, (list, tuple)):
            items = list(enumerate(node))
        else:
            items = [("", node.state)] if isinstance(node, Opaque) else []
        stack.extend((f"{path}.{k}" if k != "" else path, v, depth + 1) for k, v in reversed(items))


JIT_HANDLERS = {  # torch.jit._pickle helpers: each returns its data argument unchanged
    **dict.fromkeys(["torch.jit._pickle.build_intlist", "torch.jit._pickle.build_tensorlist",
                     "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
                     "torch.jit._pickle.restore_type_tag"], lambda value, *_: value),
}


def open(path: Path) -> Checkpoint:  # noqa: A001 - the reader interface
    """Read the directory, data.pkl, constants.pkl and the code's text; run nothing."""
    from core.layout import build_sections

    path = Path(path)
    archive = open_archive(path)
    byteorder = read_byteorder(archive)
    root, findings = load_pickle(archive, "data", byteorder)
    constants, more = load_pickle(archive, "constants", byteorder)
    findings += [f for f in more if f not in findings]
    qualnames = _qualnames(root)
    classes = read_classes(archive, qualnames)
    if isinstance(root, Opaque) and is_script_class(root.qualname):
        state, extra = module_tensors(root, classes)
    else:  # torch.jit.load would refuse it; still show what it holds and its findings
        state, extra = {}, {}
        _collect("data", root, extra)
        findings.append(_not_a_module(archive, root))
    sections, weights = build_sections({"model": state} if state else {})
    _add_section(sections, "attributes", extra)
    _add_section(sections, "constants", _constants(constants))
    metadata = {"torchscript": {
        "root_class": getattr(root, "qualname", None), "classes": sorted(qualnames),
        "format_version": _text(archive, "version"), "byteorder": byteorder,
        "extra_files": [n[len("extra/"):] for n in archive.names() if n.startswith("extra/")],
    }, **read_extra(archive)}
    return Checkpoint(path=path, format=FORMAT, sections=sections, weights=weights,
                      metadata=metadata, findings=findings)


def _not_a_module(archive: ZipArchive, root: Any) -> Finding:
    what = root.qualname if isinstance(root, Opaque) else type(root).__name__
    return Finding(kind="structure", name="data.pkl", severity="unknown",
                   where=f"{archive.folder}/data.pkl",
                   message=f"The file's main data is '{what}', not a TorchScript module, so "
                           "torch.jit.load would refuse it.")


def load_pickle(archive: ZipArchive, name: str, byteorder: str) -> tuple[Any, list[Finding]]:
    """Unpickle `<name>.pkl` as data; its tensors live in `<name>/<key>` (as torch reads them)."""
    storages: dict[str, Storage] = {}

    def persistent_load(pid: Any) -> Storage:
        key, dtype, numel, _location = parse_storage_id(pid)
        if key not in storages:
            storages[key] = archive.storage(f"{name}/{key}", dtype, numel * itemsize(dtype),
                                            byteorder)
        return storages[key]

    result = pickle_vm.load(archive.read(f"{name}.pkl"), where=f"{archive.folder}/{name}.pkl",
                            persistent_load=persistent_load, handlers=JIT_HANDLERS,
                            quiet_globals=is_script_class)
    return result.value, result.findings


def _qualnames(root: Any) -> set[str]:
    """Every script class named in the module tree (walked without recursion)."""
    names: set[str] = set()
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Opaque):
            if is_script_class(node.qualname):
                names.add(node.qualname)
            stack += [node.state, node.args, node.items]
        elif isinstance(node, dict):
            stack += list(node.values())
        elif isinstance(node, (list, tuple)):
            stack += list(node)
    return names


def _constants(value: Any) -> dict[str, TensorInfo]:
    """constants.pkl is a tuple; the code refers to its tensors as CONSTANTS.c<i>."""
    items = value if isinstance(value, tuple) else ()
    return {f"c{i}": replace(t, name=f"c{i}", role=BUFFER)
            for i, t in enumerate(items) if isinstance(t, TensorInfo)}


def _add_section(sections: dict[str, Section], name: str, tensors: dict[str, TensorInfo]) -> None:
    if tensors:
        sections[name] = Section(name, tensors=tensors)


def _text(archive: ZipArchive, name: str) -> str | None:
    rec = archive.get(name)
    if rec is None or rec.size > 1024:
        return None
    return archive.read(name).decode("utf-8", "replace").strip()

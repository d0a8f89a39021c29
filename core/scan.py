"""Security findings: which globals/opcodes a file references, how bad they are, how to allow them.

Rating is an allowlist: a global is harmless only when torch.load(weights_only=True) accepts it
already or when it is on `INERT_TYPES` (classes whose construction runs no code from the file).
Every other global, whatever its name, could run code when the file is loaded, and is rated
dangerous. A list of bad names can never be complete; it only picks the wording of the message.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from core.model import Checkpoint, Finding

# Globals torch.load(weights_only=True) accepts (torch 2.x `_get_allowed_globals`), exactly.
WEIGHTS_ONLY_NAMES = {
    "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.bytearray",
    "builtins.complex", "_codecs.encode", "torch.Size", "torch.device", "torch.Tensor",
    "torch.nn.parameter.Parameter", "torch.serialization._get_layout", "torch.storage.TypedStorage",
    "torch.storage.UntypedStorage", "torch._tensor._rebuild_from_type_v2",
}
_REBUILD_FUNCTIONS = (
    "parameter", "parameter_with_state", "qtensor", "tensor", "tensor_v2", "tensor_v3",
    "sparse_tensor", "meta_tensor_no_storage", "nested_tensor", "wrapper_subclass",
    "device_tensor_from_numpy", "device_tensor_from_cpu_tensor",
)
_TENSOR_CLASSES = ("Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long")
_QSCHEMES = ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
             "per_channel_symmetric", "per_channel_affine_float_qparams")

_NUMPY_DTYPE_CLASSES = (
    "Bool", "Byte", "Bytes", "CLongDouble", "Complex128", "Complex64", "DateTime64", "Float16",
    "Float32", "Float64", "Int16", "Int32", "Int64", "Int8", "Int", "Long", "LongDouble",
    "LongLong", "Short", "Str", "TimeDelta64", "UByte", "UInt16", "UInt32", "UInt64", "UInt8",
    "UInt", "ULong", "ULongLong", "UShort",
)
# numpy.dtype(code) builds an instance of the class for that code; torch's BUILD then needs it too
_NUMPY_CODES = {"b1": "Bool", "f2": "Float16", "f4": "Float32", "f8": "Float64", "f16": "LongDouble",
                "c8": "Complex64", "c16": "Complex128", "c32": "CLongDouble", "M8": "DateTime64",
                "m8": "TimeDelta64", "O8": "Object", "O4": "Object",
                **{f"i{n}": f"Int{8 * n}" for n in (1, 2, 4, 8)},
                **{f"u{n}": f"UInt{8 * n}" for n in (1, 2, 4, 8)}}
# Python 3.13 moved pathlib's classes to pathlib._local; files name them either way, so the line
# allows them as (class, "name in the file"), which works whatever Python loads the file
_PATHLIB = {f"pathlib{inner}.{name}": f"pathlib.{name}" for inner in ("", "._local")
            for name in ("PurePosixPath", "PureWindowsPath", "PosixPath")}
# Classes whose construction (call, __new__, __setstate__ or __dict__ update with values that are
# themselves inert) runs no code named by the file: the only globals `scan` ever suggests allowing.
# Exact names only: `argparse.Namespace.__init__` or `uuid._get_command_stdout` are not on it.
# Left out on purpose: every function (numpy's scalar/_reconstruct included); defaultdict (calls
# its factory later); deque (torch's unpickler cannot fill it anyway); fractions.Fraction
# ("1e999999999" never finishes); config classes whose __init__/__post_init__ act on their
# arguments (transformers' TrainingArguments and the like).
INERT_TYPES = frozenset({
    "collections.OrderedDict", "collections.Counter",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes",
    "builtins.complex", "builtins.slice", "builtins.range",
    "argparse.Namespace", "types.SimpleNamespace",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
    "decimal.Decimal", "uuid.UUID",
    *_PATHLIB,
    "numpy.dtype", *(f"numpy.dtypes.{name}DType" for name in _NUMPY_DTYPE_CLASSES),
    "torch.Size", "torch.device", "torch.torch_version.TorchVersion",
})

# Modules known to reach the system; only changes the message's wording (see the module doc).
SYSTEM_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket",
    "runpy", "importlib", "imp", "pickle", "_pickle", "cPickle", "marshal", "types", "ctypes",
    "pty", "code", "codeop", "commands", "webbrowser", "urllib", "requests", "http", "asyncio",
    "multiprocessing", "threading", "signal", "tempfile", "pathlib", "io", "operator", "_operator",
    "functools", "_functools", "inspect", "pdb", "timeit", "platform", "shelve", "dill", "pip",
    "pkgutil", "pydoc", "cProfile", "profile", "trace", "logging", "uuid", "ensurepip", "venv",
    "numpy.testing", "numpy.f2py", "torch.hub", "torch.jit", "torch.ops", "torch._C",
    "torch.distributed", "torch.utils.cpp_extension", "torch.fx", "torch.serialization",
    "torch._dynamo", "torch._inductor",
}
REACH_THROUGH = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil",
                 "socket", "runpy", "importlib", "ctypes", "pty", "marshal", "pickle"}
CODE_NAMES = {"eval", "exec", "system", "popen", "__import__", "getattr", "compile", "open", "apply",
              "call", "run", "spawn", "load", "loads", "main"}


def allowed_by_weights_only(qualname: str) -> bool:
    return qualname in _weights_only_names()


@functools.cache
def _weights_only_names() -> frozenset[str]:
    from core.dtypes import ITEMSIZE, STORAGE_CLASS

    names = set(WEIGHTS_ONLY_NAMES)
    names |= {f"torch._utils._rebuild_{name}" for name in _REBUILD_FUNCTIONS}
    names |= {f"torch.{name}" for name in STORAGE_CLASS}
    names |= {f"torch.cuda.{name}" for name in STORAGE_CLASS if not name.startswith("Q")}
    names |= {f"{module}.{kind}Tensor" for kind in _TENSOR_CLASSES
              for module in ("torch", "torch.cuda", "torch.sparse", "torch.cuda.sparse")}
    names |= {f"{module}.BoolTensor" for module in ("torch", "torch.cuda")}
    dtypes = [*ITEMSIZE, *(f"{kind}{bits}" for kind in ("int", "uint") for bits in range(1, 8))]
    return frozenset(names | {f"torch.{name}" for name in (*dtypes, *_QSCHEMES)})


def is_inert_type(qualname: str) -> bool:
    """A class on the allowlist of types whose construction runs no code from the file."""
    return qualname in INERT_TYPES


def built_type(qualname: str, args: Any) -> str | None:
    """The class torch must also allow when a file builds `qualname(*args)`, if it is another one
    (numpy.dtype("i8", ...) is a numpy.dtypes.Int64DType, which torch's BUILD then checks)."""
    if qualname != "numpy.dtype" or not isinstance(args, tuple) or not args:
        return None
    code = args[0] if isinstance(args[0], str) else ""
    kind = _NUMPY_CODES.get(code) or {"S": "Bytes", "U": "Str", "V": "Void"}.get(code[:1])
    if kind is None or (kind in ("Bytes", "Str", "Void") and not code[1:].isdigit()):
        return f"numpy.dtypes.{code!r}"  # a code numpy does not write: nothing to offer
    return f"numpy.dtypes.{kind}DType"


def severity_of(qualname: str) -> str:
    """'unknown' (not code) for globals torch accepts or inert types; 'dangerous' for all else."""
    if allowed_by_weights_only(qualname) or is_inert_type(qualname):
        return "unknown"
    return "dangerous"


def reaches_system(qualname: str) -> bool:
    """Known to run commands or touch the system (a subset of 'dangerous', for the wording)."""
    module, _, name = qualname.rpartition(".")
    parts = module.split(".")
    prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
    return bool(prefixes & SYSTEM_MODULES) or not qualname.isascii() or name in CODE_NAMES \
        or _reaches_through(qualname)


def _reaches_through(qualname: str) -> bool:
    """A dotted path (protocol 4 resolves "torch.serialization" + "os.execv" attribute by
    attribute) that passes through a system module or uses a dunder attribute (__globals__)."""
    inner = qualname.split(".")[1:]
    return (any(part in REACH_THROUGH for part in inner[:-1])
            or any(len(part) > 4 and part.startswith("__") and part.endswith("__") for part in inner))


def global_finding(qualname: str, where: str = "") -> Finding:
    """The finding for a global a pickle references that we did not resolve."""
    severity = severity_of(qualname)
    blocks = not allowed_by_weights_only(qualname)
    if severity == "dangerous" and reaches_system(qualname):
        message = (f"The file asks to call '{qualname}', which can run commands or change your "
                   "system. It was not run.")
    elif severity == "dangerous":
        message = (f"The file asks to call '{qualname}', code that could do anything when the file "
                   "is loaded with torch.load. It was not run.")
    elif blocks:
        message = (f"The file uses '{qualname}', a plain data type that runs no code; "
                   "torch.load(weights_only=True) refuses it unless you allow it.")
    else:
        message = (f"The file references '{qualname}', which torch.load(weights_only=True) "
                   "accepts but this tool does not read. It was not run.")
    return Finding(kind="global", name=qualname, severity=severity, message=message, where=where,
                   blocks_weights_only=blocks)


def refused_marker_finding(qualname: str, where: str = "") -> Finding:
    """A global we read as data (a set, a storage type) that torch.load(weights_only=True) still
    refuses: inert types get the usual finding, the rest one that offers no way around it."""
    if is_inert_type(qualname):
        return global_finding(qualname, where)
    return Finding(kind="global", name=qualname, severity="unknown", where=where,
                   message=f"The file names '{qualname}', which this tool reads as plain data but "
                           "torch.load(weights_only=True) refuses. Nothing was run.")


def opcode_finding(opcode: str, where: str = "", detail: str = "") -> Finding:
    """The finding for a pickle opcode that builds arbitrary objects (INST, OBJ, EXT*, ...)."""
    return Finding(kind="opcode", name=opcode, severity="dangerous",
                   message=f"The file uses the pickle instruction {opcode}, which can build "
                           f"arbitrary objects{': ' + detail if detail else ''}. It was not run.",
                   where=where)


@dataclass
class ScanResult:
    path: str
    format: str
    findings: list[Finding]

    @property
    def refused_by_weights_only(self) -> bool:
        """Would `torch.load(weights_only=True)` (or our reader's allowlist) refuse this file?"""
        return any(f.blocks_weights_only and f.severity != "info" for f in self.findings)

    @property
    def dangerous(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "dangerous"]

    def allow_line(self) -> str | None:
        """The add_safe_globals call that lets torch load the file, offered only when every
        finding that makes torch refuse it is an inert type (never a function or anything else)."""
        blocking = [f for f in self.findings if f.blocks_weights_only and f.severity != "info"]
        if not blocking or self.dangerous or not all(
                f.kind == "global" and is_inert_type(f.name) for f in blocking):
            return None
        names = sorted({f.name for f in blocking})
        modules = sorted({_PATHLIB.get(n, n).rpartition(".")[0] for n in names} - {"torch"})
        imports = "\n".join(f"import {m}" for m in ["torch", *modules])
        listed = ", ".join(f'({_PATHLIB[n]}, "{n}")' if n in _PATHLIB else n for n in names)
        return f"{imports}\ntorch.serialization.add_safe_globals([{listed}])"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format,
            "refused_by_weights_only": self.refused_by_weights_only,
            "dangerous": len(self.dangerous), "allow_line": self.allow_line(),
            "findings": [f.to_dict() for f in self.findings],
        }


def scan_checkpoint(checkpoint: Checkpoint) -> ScanResult:
    return ScanResult(str(checkpoint.path), checkpoint.format, list(checkpoint.findings))

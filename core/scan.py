"""Security findings: which globals/opcodes a file references, how bad they are, how to allow them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.model import Checkpoint, Finding

# Globals torch.load(weights_only=True) accepts (torch 2.x `_get_allowed_globals`), by prefix/name.
WEIGHTS_ONLY_NAMES = {
    "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
    "builtins.bytearray", "builtins.complex", "_codecs.encode", "torch.Size", "torch.device",
    "torch.Tensor", "torch.nn.parameter.Parameter", "torch.serialization._get_layout",
    "torch.storage.TypedStorage", "torch.storage.UntypedStorage", "torch._tensor._rebuild_from_type_v2",
}
WEIGHTS_ONLY_PREFIXES = ("torch._utils._rebuild_",)
TORCH_DTYPE_AND_STORAGE_SUFFIXES = ("Storage", "Tensor")

# Modules whose globals can run code or touch the system if called while unpickling.
DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket",
    "runpy", "importlib", "pickle", "_pickle", "cPickle", "marshal", "types", "ctypes", "pty",
    "code", "codeop", "commands", "webbrowser", "urllib", "requests", "http", "asyncio",
    "multiprocessing", "threading", "signal", "tempfile", "pathlib", "io", "operator",
    "functools", "inspect", "pdb", "timeit", "platform", "shelve", "dill", "numpy.testing",
    "torch.hub", "torch.jit", "torch.ops", "torch._C", "torch.distributed", "torch.utils.cpp_extension",
}
REACH_THROUGH = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil",
                 "socket", "runpy", "importlib", "ctypes", "pty", "marshal", "pickle"}
SAFE_BUILTINS = {"builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.complex",
                 "builtins.slice", "builtins.range", "builtins.object"}


def allowed_by_weights_only(qualname: str) -> bool:
    if qualname in WEIGHTS_ONLY_NAMES or qualname.startswith(WEIGHTS_ONLY_PREFIXES):
        return True
    module, _, name = qualname.rpartition(".")
    if module in ("torch", "torch.cuda", "torch.sparse") and name.endswith(
        TORCH_DTYPE_AND_STORAGE_SUFFIXES
    ):
        return True
    return module == "torch" and _is_torch_dtype_name(name)


def _is_torch_dtype_name(name: str) -> bool:
    from core.dtypes import ITEMSIZE

    return name in ITEMSIZE or name.startswith(("int", "uint", "per_", "float", "complex"))


def severity_of(qualname: str) -> str:
    """'dangerous' for globals that can run code or reach the system, else 'unknown'."""
    if qualname in SAFE_BUILTINS:
        return "unknown"
    module = qualname.rpartition(".")[0]
    parts = module.split(".")
    prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
    if prefixes & DANGEROUS_MODULES or not qualname.isascii() or _reaches_through(qualname):
        return "dangerous"
    if qualname.rpartition(".")[2] in {"eval", "exec", "system", "popen", "__import__", "getattr",
                                        "compile", "open", "apply", "call", "run", "spawn"}:
        return "dangerous"
    return "unknown"


def _reaches_through(qualname: str) -> bool:
    """A dotted path (protocol 4 resolves "torch.serialization" + "os.execv" attribute by
    attribute) that passes through a system module or uses a dunder attribute (__globals__)."""
    inner = qualname.split(".")[1:]
    return (any(part in REACH_THROUGH for part in inner[:-1])
            or any(len(part) > 4 and part.startswith("__") and part.endswith("__") for part in inner))


def global_finding(qualname: str, where: str = "") -> Finding:
    """The finding for a global a pickle references that we did not resolve."""
    severity = severity_of(qualname)
    if severity == "dangerous":
        message = (f"The file asks to call '{qualname}', which can run commands or change your "
                   "system. It was not run.")
    else:
        message = (f"The file references '{qualname}', code that is not part of plain tensor "
                   "data. It was not run.")
    return Finding(kind="global", name=qualname, severity=severity, message=message, where=where,
                   blocks_weights_only=not allowed_by_weights_only(qualname))


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
        """The add_safe_globals call that lets torch load the file, when no global is dangerous."""
        names = sorted({f.name for f in self.findings if f.kind == "global" and f.blocks_weights_only})
        if not names or self.dangerous:
            return None
        imports = "\n".join(f"from {n.rpartition('.')[0]} import {n.rpartition('.')[2]}"
                            for n in names)
        listed = ", ".join(n.rpartition(".")[2] for n in names)
        return f"import torch\n{imports}\ntorch.serialization.add_safe_globals([{listed}])"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format,
            "refused_by_weights_only": self.refused_by_weights_only,
            "dangerous": len(self.dangerous), "allow_line": self.allow_line(),
            "findings": [f.to_dict() for f in self.findings],
        }


def scan_checkpoint(checkpoint: Checkpoint) -> ScanResult:
    return ScanResult(str(checkpoint.path), checkpoint.format, list(checkpoint.findings))

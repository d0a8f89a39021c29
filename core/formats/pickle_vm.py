"""Our own restricted pickle interpreter: builds plain data and tensor metadata, never runs code.

It reads protocols 0-5 opcode by opcode, exactly as the real unpickler frames them, and stops at the
STOP opcode (`PickleResult.end` is the offset after it, so several pickles in a row can be read).
Globals never get imported: the few torch writes for tensors/storages/containers become inert
markers (see `pickle_ops`); any other global becomes an `Opaque` plus a finding. REDUCE/NEWOBJ/BUILD
on an Opaque only record their arguments. Every size is bounded before anything is allocated.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats.pickle_checks import KeyChecker, check_tree
from core.formats.pickle_opcodes import DISPATCH
from core.formats.pickle_ops import (
    HANDLERS,
    MALFORMED,
    REBUILD_FROM_TYPE,
    DType,
    PickledOrderedDict,
    Ref,
    StorageType,
    brief,
    check_no_state,
    resolve_global,
)
from core.model import Finding, Opaque, TensorInfo
from core.scan import allowed_by_weights_only, built_type, global_finding, refused_marker_finding

__all__ = [
    "DType", "Limits", "PickleResult", "PickledOrderedDict", "Ref", "StorageType", "load",
    "is_pickle_start",
]

HIGHEST_PROTOCOL = 5


@dataclass(frozen=True)
class Limits:
    max_ops: int = 50_000_000
    max_stack: int = 1_000_000
    max_marks: int = 100_000
    max_memo: int = 10_000_000
    max_line: int = 1 << 16  # text opcodes (protocol 0 ints, GLOBAL names)
    max_long_bytes: int = 4096  # LONG4 / text LONG size
    max_depth: int = 200  # nesting of the built value (checked without recursion)
    max_nodes: int = 50_000_000  # size of the built value counting shared parts each time
    max_work: int = 200_000_000  # items copied or hashed again (memo reuse must not amplify)


LIMITS = Limits()


@dataclass
class PickleResult:
    value: Any
    findings: list[Finding] = field(default_factory=list)
    end: int = 0  # offset just after the STOP opcode
    protocol: int = 0


def load(
    data: bytes | bytearray | memoryview,
    *,
    where: str,
    persistent_load: Callable[[Any], Any] | None = None,
    start: int = 0,
    handlers: dict[str, Callable[..., Any]] | None = None,
    quiet_globals: Callable[[str], bool] | None = None,
    encoding: str = "utf-8",
    limits: Limits = LIMITS,
) -> PickleResult:
    """Interpret one pickle starting at `start`; never imports or calls anything from the file.

    `persistent_load(pid)` resolves persistent ids (torch storages). `handlers` maps extra global
    names to OUR functions, called with the REDUCE/NEWOBJ arguments. Globals for which
    `quiet_globals(name)` is true become Opaque without a finding. Text from protocol-2 byte
    strings is decoded with `encoding` ("bytes" keeps bytes), as torch.load does (utf-8).
    Raises CorruptFile on malformed or truncated input.
    """
    vm = _Machine(memoryview(data).cast("B"), start, where, persistent_load, handlers or {},
                  quiet_globals, encoding, limits)
    try:
        value = vm.run()
        check_tree(value, limits.max_depth, limits.max_nodes, where)
    except CheckpointError as exc:
        raise _name_dangerous(exc, list(vm.findings.values())) from None
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, struct.error,
            UnicodeError, OverflowError, RecursionError, MemoryError) as exc:
        error = CorruptFile("The file's data could not be read; it is damaged or not a real "
                            "checkpoint.", f"{where} at byte {vm.op_pos}: {type(exc).__name__}: "
                            f"{exc}")
        raise _name_dangerous(error, list(vm.findings.values())) from None
    return PickleResult(value, list(vm.findings.values()), vm.pos, vm.proto)


def _name_dangerous(error: CheckpointError, findings: list[Finding]) -> CheckpointError:
    """A pickle that fails to read after naming dangerous globals: refuse it as unsafe, naming
    them (a malformed file must not hide that loading it would run code)."""
    names = [f.name for f in findings if f.kind == "global" and f.severity == "dangerous"]
    if not names or isinstance(error, UnsafeContent):
        return error
    listed = ", ".join(f"'{n}'" for n in names[:3]) + (" and more" if len(names) > 3 else "")
    return UnsafeContent(f"This file asks to run {listed} when it is loaded, and its data is "
                         "damaged; it was not opened and nothing in it was run.", findings,
                         f"{error.message} ({error.details})" if error.details else error.message)


def is_pickle_start(head: bytes) -> bool:
    """Cheap test: does `head` start like a pickle (PROTO, or a protocol 0/1 opcode)?"""
    return bool(head) and (head[0] == 0x80 and len(head) > 1 and head[1] <= HIGHEST_PROTOCOL
                           or head[:1] in _OPENERS)


_OPENERS = {b"(", b"]", b"}", b")", b"L", b"I", b"J", b"K", b"M", b"N", b"c", b"X", b"U", b"S",
            b"V", b"F", b"G", b"T"}


_SIZED = (list, tuple, dict, set, frozenset, str, bytes, bytearray)


class _Stop(Exception):
    pass


class _Machine:
    def __init__(self, data: memoryview, start: int, where: str,
                 persistent_load: Callable[[Any], Any] | None,
                 handlers: dict[str, Callable[..., Any]], quiet: Callable[[str], bool] | None,
                 encoding: str, limits: Limits) -> None:
        self.data, self.pos, self.op_pos, self.where = data, start, start, where
        self.persistent_load, self.handlers, self.quiet = persistent_load, handlers, quiet
        self.encoding, self.limits = encoding, limits
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.findings: dict[tuple[str, str], Finding] = {}
        self.proto = 0
        self.work = 0
        self.keys = KeyChecker(self.charge)

    # ---- reading -------------------------------------------------------------------------
    def run(self) -> Any:
        data, end, dispatch = self.data, len(self.data), DISPATCH
        max_stack = self.limits.max_stack
        for _ in range(self.limits.max_ops):
            pos = self.pos
            if pos >= end:
                raise _truncated(self.where)
            self.op_pos, self.pos = pos, pos + 1
            handler = dispatch.get(data[pos])
            if handler is None:
                raise CorruptFile(MALFORMED,
                                  f"{self.where}: unknown opcode {data[pos]:#04x} at byte {pos}")
            try:
                handler(self)
            except _Stop:
                return self.stack.pop() if self.stack else self._underflow()
            if len(self.stack) > max_stack:
                raise _too_big(self.where, "stack")
        raise _too_big(self.where, "instruction count")

    def take(self, n: int) -> memoryview:
        if n < 0 or n > len(self.data) - self.pos:
            raise _truncated(self.where)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, n: int) -> Any:
        pos = self.pos
        if n > len(self.data) - pos:
            raise _truncated(self.where)
        self.pos = pos + n
        return struct.unpack_from(fmt, self.data, pos)[0]

    def line(self) -> bytes:
        """Bytes up to (not including) the next newline, which must come soon."""
        stop = min(len(self.data), self.pos + self.limits.max_line + 1)
        chunk = bytes(self.data[self.pos:stop])
        nl = chunk.find(b"\n")
        if nl < 0:
            raise _truncated(self.where) if stop == len(self.data) else _too_big(self.where, "line")
        self.pos += nl + 1
        return chunk[:nl]

    # ---- stack -----------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        return self.stack.pop() if self.stack else self._underflow()

    def top(self) -> Any:
        return self.stack[-1] if self.stack else self._underflow()

    def mark(self) -> None:
        if len(self.metastack) >= self.limits.max_marks:
            raise _too_big(self.where, "nesting")
        self.metastack.append(self.stack)
        self.stack = []

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: no MARK at byte {self.op_pos}")
        items, self.stack = self.stack, self.metastack.pop()
        return items

    def memo_put(self, index: int, value: Any) -> None:
        if index not in self.memo and len(self.memo) >= self.limits.max_memo:
            raise _too_big(self.where, "memo")
        self.memo[index] = value

    def memo_get(self, index: int) -> Any:
        if index not in self.memo:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: memo entry {index} missing at byte {self.op_pos}")
        return self.memo[index]

    def _underflow(self) -> Any:
        raise CorruptFile(MALFORMED,
                          f"{self.where}: stack underflow at byte {self.op_pos}")

    def charge(self, units: int) -> None:
        """Count work that is not one-per-opcode (copies of shared values, key hashing)."""
        self.work += units
        if self.work > self.limits.max_work:
            raise _too_big(self.where, "work")

    # ---- text ------------------------------------------------------------------------------
    def decode(self, raw: bytes | memoryview) -> str | bytes:
        """A protocol-0..2 byte string, as torch.load decodes it (utf-8 by default)."""
        if self.encoding == "bytes":
            return bytes(raw)
        return bytes(raw).decode(self.encoding, "strict")

    def quoted(self, line: bytes) -> bytes:
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise CorruptFile(MALFORMED,
                              f"{self.where}: bad STRING at byte {self.op_pos}")
        return codecs.escape_decode(line[1:-1])[0]

    # ---- globals and calls -----------------------------------------------------------------
    def find_global(self, module: str, name: str) -> Any:
        if self.proto < 3:  # what the real unpickler does for Python 2 names (fix_imports)
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        qualname = f"{module}.{name}"
        if qualname in self.handlers:
            return Ref(qualname)
        marker = resolve_global(qualname)
        if marker is not None:
            if not allowed_by_weights_only(qualname):  # we read it, but torch.load would refuse
                self.add_finding(refused_marker_finding(qualname, self.where))
            return marker
        if not (self.quiet and self.quiet(qualname)):
            self.add_finding(global_finding(qualname, self.where))
        return Opaque(qualname)

    def add_finding(self, finding: Finding) -> None:
        self.findings.setdefault((finding.name, finding.where), finding)

    def call(self, func: Any, args: Any, kwargs: dict[str, Any] | None = None) -> Any:
        """REDUCE / NEWOBJ: run OUR handler for an allowlisted marker, else record an Opaque."""
        if not isinstance(args, tuple):
            raise CorruptFile(MALFORMED,
                              f"{self.where}: call arguments are not a tuple at byte {self.op_pos}")
        if isinstance(func, Opaque):
            if (built := built_type(func.qualname, args)) is not None:
                self.add_finding(refused_marker_finding(built, self.where))
            return Opaque(func.qualname, (*args, kwargs) if kwargs else args)
        if isinstance(func, Ref):
            if func.qualname == REBUILD_FROM_TYPE:
                return self._rebuild_from_type(*args)
            handler = self.handlers.get(func.qualname) or HANDLERS.get(func.qualname)
            if handler is not None:
                self.charge(1 + sum(len(a) for a in args if isinstance(a, _SIZED)))
                return handler(*args, **(kwargs or {}))
        name = getattr(func, "qualname", None) or getattr(func, "name", type(func).__name__)
        raise CorruptFile("The file asks to build an object from something that cannot build "
                          "one; it is damaged.", f"{self.where}: call of {brief(name)}")

    def _rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any) -> Any:
        result = self.call(func, args)
        if isinstance(new_type, Opaque):
            return result  # a tensor subclass: its type was recorded as a finding, data kept
        if isinstance(result, TensorInfo):
            check_no_state(state)  # torch would set each attribute of it on the tensor
            return result
        return Opaque(REBUILD_FROM_TYPE, (func, new_type, args, state))

    def build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, Opaque):
            inst.state = state if inst.state is None else (inst.state, state)
        elif isinstance(inst, PickledOrderedDict):
            if isinstance(state, tuple) and len(state) == 2:
                state = state[0]
            if isinstance(state, dict):
                if inst.attrs is None:
                    inst.attrs = {}
                inst.attrs.update(state)
        elif isinstance(inst, TensorInfo):  # torch would call set_(*state) / __setstate__
            raise CorruptFile("A tensor in the file is changed after it is built, in a way "
                              "torch.save does not write; this app cannot show it exactly as "
                              "torch loads it, so the file was not opened.",
                              f"{self.where}: BUILD on a tensor at byte {self.op_pos}")
        else:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: BUILD on {type(inst).__name__} at {self.op_pos}")

    def extend(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Opaque):
            target.items.extend(items)
        else:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: APPEND to {type(target).__name__} at {self.op_pos}")

    def set_items(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: odd SETITEMS at byte {self.op_pos}")
        keys = items[::2]
        if isinstance(target, dict):
            self.keys.check(keys)
            target.update(zip(keys, items[1::2], strict=True))
        elif isinstance(target, Opaque):
            target.items.extend(zip(keys, items[1::2], strict=True))
        else:
            raise CorruptFile(MALFORMED,
                              f"{self.where}: SETITEM on {type(target).__name__} at {self.op_pos}")


def _truncated(where: str) -> CorruptFile:
    return CorruptFile("The file is damaged or incomplete: its data ends too early.",
                       f"{where}: pickle data was truncated")


def _too_big(where: str, what: str) -> CorruptFile:
    return CorruptFile("The file's data is too large or too complex to read safely.",
                       f"{where}: {what} limit exceeded")

"""One small function per pickle opcode (protocols 0-5), dispatched by `pickle_vm._Machine.run`.

Each reads its argument bytes exactly as CPython's unpickler does and works on the machine's stack.
Nothing here imports or calls anything named by the file.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.errors import CorruptFile
from core.formats.pickle_ops import MALFORMED
from core.model import Opaque
from core.scan import opcode_finding

if TYPE_CHECKING:  # pragma: no cover
    from core.formats.pickle_vm import _Machine as VM

_BAD = MALFORMED
DISPATCH: dict[int, Callable[[VM], None]] = {}


def op(code: bytes) -> Callable[[Callable[[VM], None]], Callable[[VM], None]]:
    def register(fn: Callable[[VM], None]) -> Callable[[VM], None]:
        DISPATCH[code[0]] = fn
        return fn

    return register


def _bad(vm: VM, what: str) -> CorruptFile:
    return CorruptFile(_BAD, f"{vm.where}: {what} at byte {vm.op_pos}")


# ---- framing / control ---------------------------------------------------------------------
@op(b"\x80")
def proto(vm: VM) -> None:
    vm.proto = vm.take(1)[0]
    if vm.proto > 5:
        raise _bad(vm, f"unsupported pickle protocol {vm.proto}")


@op(b"\x95")
def frame(vm: VM) -> None:
    size = vm.unpack("<Q", 8)
    if size > len(vm.data) - vm.pos:
        raise CorruptFile("The file is damaged or incomplete: its data ends too early.",
                          f"{vm.where}: frame of {size} bytes at {vm.op_pos} is cut off")


@op(b".")
def stop(vm: VM) -> None:
    from core.formats.pickle_vm import _Stop

    raise _Stop


DISPATCH[ord("(")] = lambda vm: vm.mark()
DISPATCH[ord("1")] = lambda vm: vm.pop_mark()  # POP_MARK
DISPATCH[ord("2")] = lambda vm: vm.stack.append(vm.top())  # DUP


@op(b"0")
def pop(vm: VM) -> None:
    if vm.stack:
        vm.stack.pop()
    else:
        vm.pop_mark()


# ---- numbers -------------------------------------------------------------------------------
@op(b"I")
def int_text(vm: VM) -> None:
    line = vm.line()
    vm.stack.append(False if line == b"00" else True if line == b"01" else int(line, 0))


@op(b"L")
def long_text(vm: VM) -> None:
    line = vm.line()
    if len(line) > vm.limits.max_long_bytes * 3:
        raise _bad(vm, "integer too long")
    vm.stack.append(int(line[:-1] if line.endswith(b"L") else line, 0))


@op(b"\x8a")
def long1(vm: VM) -> None:
    vm.stack.append(int.from_bytes(vm.take(vm.take(1)[0]), "little", signed=True))


@op(b"\x8b")
def long4(vm: VM) -> None:
    size = vm.unpack("<i", 4)
    if size < 0 or size > len(vm.data) - vm.pos:
        raise _bad(vm, f"LONG4 of {size} bytes")
    if size > vm.limits.max_long_bytes:
        raise _bad(vm, f"LONG4 of {size} bytes is too large")
    vm.stack.append(int.from_bytes(vm.take(size), "little", signed=True))


@op(b"F")
def float_text(vm: VM) -> None:
    vm.stack.append(float(vm.line()))


# ---- strings -------------------------------------------------------------------------------
def _sized(vm: VM, fmt: str, n: int) -> bytes:
    size = vm.unpack(fmt, n)
    if size < 0:
        raise _bad(vm, "negative length")
    return bytes(vm.take(size))  # take() checks the length against what is left first


@op(b"S")
def string(vm: VM) -> None:
    vm.stack.append(vm.decode(vm.quoted(vm.line())))


@op(b"V")
def unicode_text(vm: VM) -> None:
    vm.stack.append(vm.line().decode("raw-unicode-escape"))


@op(b"\x97")
def next_buffer(vm: VM) -> None:
    vm.add_finding(opcode_finding("NEXT_BUFFER", vm.where, "data kept outside the file"))
    vm.stack.append(Opaque("pickle.PickleBuffer"))


@op(b"\x98")
def readonly_buffer(vm: VM) -> None:
    vm.add_finding(opcode_finding("READONLY_BUFFER", vm.where, "data kept outside the file"))
    vm.top()


# ---- containers ----------------------------------------------------------------------------
def _pop_n(vm: VM, n: int) -> list[Any]:
    if len(vm.stack) < n:
        vm.pop()  # raises the underflow error
    items = vm.stack[-n:]
    del vm.stack[-n:]
    return items


@op(b"t")
def tuple_(vm: VM) -> None:
    vm.push(tuple(vm.pop_mark()))


@op(b"\x85")
def tuple1(vm: VM) -> None:
    stack = vm.stack
    stack[-1] = (stack[-1] if stack else vm.pop(),)


@op(b"\x86")
def tuple2(vm: VM) -> None:
    vm.stack.append(tuple(_pop_n(vm, 2)))


@op(b"\x87")
def tuple3(vm: VM) -> None:
    vm.stack.append(tuple(_pop_n(vm, 3)))


@op(b"l")
def list_(vm: VM) -> None:
    vm.push(vm.pop_mark())


@op(b"a")
def append(vm: VM) -> None:
    item = vm.pop()
    vm.extend(vm.top(), [item])


@op(b"e")
def appends(vm: VM) -> None:
    items = vm.pop_mark()
    vm.extend(vm.top(), items)


@op(b"d")
def dict_(vm: VM) -> None:
    target: dict[Any, Any] = {}
    vm.set_items(target, vm.pop_mark())
    vm.stack.append(target)


@op(b"s")
def setitem(vm: VM) -> None:
    value = vm.pop()
    key = vm.pop()
    vm.set_items(vm.top(), [key, value])


@op(b"u")
def setitems(vm: VM) -> None:
    items = vm.pop_mark()
    vm.set_items(vm.top(), items)


@op(b"\x90")
def additems(vm: VM) -> None:
    items = vm.pop_mark()
    target = vm.top()
    if isinstance(target, set):
        vm.keys.check(items)
        target.update(items)
    elif isinstance(target, Opaque):
        target.items.extend(items)
    else:
        raise _bad(vm, f"ADDITEMS on {type(target).__name__}")


@op(b"\x91")
def frozenset_(vm: VM) -> None:
    items = vm.pop_mark()
    vm.keys.check(items)
    vm.stack.append(frozenset(items))


# ---- memo ----------------------------------------------------------------------------------
@op(b"g")
def get(vm: VM) -> None:
    vm.stack.append(vm.memo_get(int(vm.line())))


@op(b"p")
def put(vm: VM) -> None:
    index = int(vm.line())
    if index < 0:
        raise _bad(vm, "negative memo index")
    vm.memo_put(index, vm.top())


@op(b"q")
def binput(vm: VM) -> None:
    vm.memo_put(vm.take(1)[0], vm.top())


@op(b"r")
def long_binput(vm: VM) -> None:
    vm.memo_put(vm.unpack("<I", 4), vm.top())


@op(b"\x94")
def memoize(vm: VM) -> None:
    vm.memo_put(len(vm.memo), vm.top())


# ---- globals, objects, persistent ids ------------------------------------------------------
@op(b"c")
def global_(vm: VM) -> None:
    module = vm.line().decode("utf-8")
    name = vm.line().decode("utf-8")
    vm.stack.append(vm.find_global(module, name))


@op(b"\x93")
def stack_global(vm: VM) -> None:
    name, module = vm.pop(), vm.pop()
    if type(name) is not str or type(module) is not str:
        raise _bad(vm, "STACK_GLOBAL needs two names")
    vm.stack.append(vm.find_global(module, name))


@op(b"R")
def reduce(vm: VM) -> None:
    args = vm.pop()
    vm.stack.append(vm.call(vm.pop(), args))


@op(b"\x81")
def newobj(vm: VM) -> None:
    args = vm.pop()
    vm.stack.append(vm.call(vm.pop(), args))


@op(b"\x92")
def newobj_ex(vm: VM) -> None:
    kwargs, args = vm.pop(), vm.pop()
    if not isinstance(kwargs, dict) or not all(type(k) is str for k in kwargs):
        raise _bad(vm, "NEWOBJ_EX keyword arguments are not a dict")
    vm.stack.append(vm.call(vm.pop(), args, kwargs))


@op(b"b")
def build(vm: VM) -> None:
    state = vm.pop()
    vm.build(vm.top(), state)


@op(b"i")
def inst(vm: VM) -> None:
    module = vm.line().decode("utf-8")
    name = vm.line().decode("utf-8")
    args = tuple(vm.pop_mark())
    target = vm.find_global(module, name)
    qualname = getattr(target, "qualname", f"{module}.{name}")
    vm.add_finding(opcode_finding("INST", vm.where, f"'{qualname}'"))
    vm.stack.append(Opaque(qualname, args))


@op(b"o")
def obj(vm: VM) -> None:
    items = vm.pop_mark()
    if not items:
        raise _bad(vm, "OBJ without a class")
    qualname = getattr(items[0], "qualname", None) or type(items[0]).__name__
    vm.add_finding(opcode_finding("OBJ", vm.where, f"'{qualname}'"))
    vm.stack.append(Opaque(qualname, tuple(items[1:])))


def _ext(vm: VM, code: int, name: str) -> None:
    vm.add_finding(opcode_finding(name, vm.where, f"extension code {code}"))
    vm.stack.append(Opaque(f"copyreg.extension.{code}"))


@op(b"\x82")
def ext1(vm: VM) -> None:
    _ext(vm, vm.take(1)[0], "EXT1")


@op(b"\x83")
def ext2(vm: VM) -> None:
    _ext(vm, vm.unpack("<H", 2), "EXT2")


@op(b"\x84")
def ext4(vm: VM) -> None:
    _ext(vm, vm.unpack("<i", 4), "EXT4")


@op(b"P")
def persid(vm: VM) -> None:
    _persistent(vm, vm.line().decode("ascii"))


@op(b"Q")
def binpersid(vm: VM) -> None:
    _persistent(vm, vm.pop())


def _persistent(vm: VM, pid: Any) -> None:
    if vm.persistent_load is None:
        raise CorruptFile("The file refers to data stored outside its pickle, which is not "
                          "expected here.", f"{vm.where}: persistent id at byte {vm.op_pos}")
    vm.stack.append(vm.persistent_load(pid))


# ---- table-driven opcodes: constants, fixed-size numbers, length-prefixed strings ---------------
def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


_CONSTANTS: dict[bytes, Callable[[], Any]] = {
    b"N": lambda: None, b"\x88": lambda: True, b"\x89": lambda: False, b")": tuple,
    b"]": list, b"}": dict, b"\x8f": set,
}
_NUMBERS = {b"J": ("<i", 4), b"K": ("<B", 1), b"M": ("<H", 2), b"G": (">d", 8)}
_MEMO_GETS = {b"h": ("<B", 1), b"j": ("<I", 4)}
# opcode -> (length format, length size, conversion; None means "decode like torch.load")
_SIZED: dict[bytes, tuple[str, int, Callable[[bytes], Any] | None]] = {
    b"T": ("<i", 4, None), b"U": ("<B", 1, None),
    b"X": ("<I", 4, _utf8), b"\x8c": ("<B", 1, _utf8), b"\x8d": ("<Q", 8, _utf8),
    b"B": ("<I", 4, bytes), b"C": ("<B", 1, bytes), b"\x8e": ("<Q", 8, bytes),
    b"\x96": ("<Q", 8, bytearray),
}


def _number(fmt: str, size: int) -> Callable[[VM], None]:
    """BININT, BININT1, BININT2, BINFLOAT: the commonest opcodes of big pickles, kept lean."""
    unpack_from = struct.Struct(fmt).unpack_from

    def read(vm: VM) -> None:
        pos = vm.pos
        if size > len(vm.data) - pos:
            vm.take(size)  # raises "ends too early"
        vm.pos = pos + size
        vm.stack.append(unpack_from(vm.data, pos)[0])
    return read


def _register_tables() -> None:
    for code, make in _CONSTANTS.items():
        DISPATCH[code[0]] = lambda vm, make=make: vm.stack.append(make())
    for code, (fmt, size) in _NUMBERS.items():
        DISPATCH[code[0]] = _number(fmt, size)
    for code, (fmt, size) in _MEMO_GETS.items():
        DISPATCH[code[0]] = lambda vm, fmt=fmt, size=size: vm.stack.append(
            vm.memo_get(vm.unpack(fmt, size)))
    for code, (fmt, size, convert) in _SIZED.items():
        DISPATCH[code[0]] = lambda vm, fmt=fmt, size=size, convert=convert: vm.stack.append(
            (convert or vm.decode)(_sized(vm, fmt, size)))


_register_tables()

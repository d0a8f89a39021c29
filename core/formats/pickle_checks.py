"""Checks on the value a pickle built: nesting depth, expanded size and self-references.

Done without recursion, so a hostile file nested 100,000 levels deep is refused instead of crashing
whoever walks the result, and data shared thousands of times over ("billion laughs") is refused
before a recursive walk could explode. A container that contains itself keeps its data, but the
inner reference is replaced by `CYCLE`, so code walking the tree recursively always ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from core.errors import CorruptFile
from core.model import Opaque

CYCLE = Opaque("<reference to itself>")
_LEAVES = {int, float, str, bytes, bool, type(None)}  # never containers: no need to ask
_Slot = tuple[str, Any] | None  # where a child sits in its parent (None: cannot be replaced)


def check_tree(root: Any, max_depth: int, max_nodes: int, where: str = "") -> None:
    """Refuse values nested deeper than `max_depth` or larger than `max_nodes` when expanded."""
    kids = _children(root)
    if kids is None:
        return
    done: dict[int, tuple[int, int]] = {}  # id -> (depth, expanded size)
    on_path = {id(root)}
    frames: list[list[Any]] = [[root, iter(kids[1]), 0, kids[0]]]  # obj, children, depth, size
    while frames:
        frame = frames[-1]
        for slot, child in frame[1]:
            key = id(child)
            if key in on_path:
                _replace(frame[0], slot, where)
                frame[3] += 1
            elif key in done:
                frame[2], frame[3] = max(frame[2], done[key][0]), frame[3] + done[key][1]
            elif (grandkids := _children(child)) is None:
                frame[3] += 1
            else:
                if len(frames) >= max_depth:
                    raise CorruptFile("The file's data is nested too deeply to read safely.",
                                      f"{where}: more than {max_depth} levels")
                frames.append([child, iter(grandkids[1]), 0, grandkids[0]])
                on_path.add(key)
                break
        else:
            frames.pop()
            on_path.discard(id(frame[0]))
            depth, size = frame[2] + 1, frame[3] + 1
            if size > max_nodes:
                raise CorruptFile("The file's data repeats itself too many times to read safely.",
                                  f"{where}: more than {max_nodes} values when expanded")
            done[id(frame[0])] = (depth, size)
            if frames:
                frames[-1][2] = max(frames[-1][2], depth)
                frames[-1][3] += size


class KeyChecker:
    """Checks dict keys / set items before Python hashes them.

    CPython hashes a tuple by hashing its items recursively, with no depth guard and no caching:
    a tuple nested a million levels deep crashes the interpreter, and one that shares its parts
    ((t, t), (t, t)), ... takes forever. Integers that differ by a multiple of 2**61 - 1 share a
    hash, which makes dict insertion quadratic. Such keys are refused; results are cached per
    tuple, and `charge` is told how much work each new check did.
    """

    MAX_DEPTH, MAX_NODES, MAX_INT = 100, 1000, 2**61 - 2

    def __init__(self, charge: Callable[[int], None] | None = None) -> None:
        self.charge = charge
        self.cache: dict[int, tuple[Any, int, int]] = {}  # id -> (tuple kept alive, size, depth)

    def check(self, values: Iterable[Any]) -> None:
        values = values if isinstance(values, list) else list(values)
        kinds = set(map(type, values))  # one pass in C: most batches are all text or all ints
        if int in kinds and (min(v for v in values if type(v) is int) < -self.MAX_INT
                             or max(v for v in values if type(v) is int) > self.MAX_INT):
            raise _bad_key("a very large number used as a key")
        if float in kinds and not all(-self.MAX_INT <= v <= self.MAX_INT
                                      for v in values if type(v) is float):
            raise _bad_key("a very large number used as a key")
        if tuple in kinds:
            for value in values:
                if type(value) is tuple:
                    self._tuple(value)

    def _tuple(self, root: tuple[Any, ...]) -> None:
        work, stack = 0, [(root, False)]
        while stack:
            value, expanded = stack.pop()
            if id(value) in self.cache:
                continue
            work += len(value) + 1
            if not expanded:
                stack.append((value, True))
                stack.extend((v, False) for v in value if type(v) is tuple)
                if len(stack) > self.MAX_NODES:
                    raise _bad_key("a key made of too many parts")
                continue
            self.check(v for v in value if type(v) is not tuple)
            kids = [self.cache[id(v)] for v in value if type(v) is tuple]
            size = 1 + len(value) + sum(k[1] for k in kids)
            depth = 1 + max((k[2] for k in kids), default=0)
            if size > self.MAX_NODES or depth > self.MAX_DEPTH:
                raise _bad_key(f"a key nested {depth} levels deep with {size} parts")
            self.cache[id(value)] = (value, size, depth)
        if self.charge:
            self.charge(work)


def check_keys(values: Iterable[Any]) -> None:
    """One-off KeyChecker check (for handlers that build sets/dicts from the file's values)."""
    KeyChecker().check(values)


def _bad_key(detail: str) -> CorruptFile:
    return CorruptFile("The file's data uses keys too complex to read safely.", detail)


def _children(obj: Any) -> tuple[int, list[tuple[_Slot, Any]]] | None:
    """(number of plain leaves, (slot, child) pairs of the rest) of a container; None for a leaf.
    Leaves (numbers, text) are only counted: a 6-million-key dict must not cost a tuple each."""
    if isinstance(obj, dict):
        if set(map(type, obj.values())) <= _LEAVES and set(map(type, obj)) <= _LEAVES:
            attrs = getattr(obj, "attrs", None)  # all plain (sets built in C): no loop below
            return 2 * len(obj), [(None, attrs)] if isinstance(attrs, dict) else []
        pairs: list[tuple[_Slot, Any]] = []
        for k, v in obj.items():
            if type(k) not in _LEAVES:
                pairs.append((None, k))
            if type(v) not in _LEAVES:
                pairs.append((("key", k), v))
        attrs = getattr(obj, "attrs", None)
        pairs += [(None, attrs)] if isinstance(attrs, dict) else []
        return 2 * len(obj) - len(pairs) + (isinstance(attrs, dict)), pairs
    if isinstance(obj, (list, tuple, set, frozenset)) and set(map(type, obj)) <= _LEAVES:
        return len(obj), []
    if isinstance(obj, list):
        pairs = [(("index", i), v) for i, v in enumerate(obj) if type(v) not in _LEAVES]
        return len(obj) - len(pairs), pairs
    if isinstance(obj, (tuple, set, frozenset)):
        pairs = [(None, v) for v in obj if type(v) not in _LEAVES]
        return len(obj) - len(pairs), pairs
    if isinstance(obj, Opaque):
        return 0, ([(("args", i), v) for i, v in enumerate(obj.args)] + [(("state", 0), obj.state)]
                   + [(("items", i), v) for i, v in enumerate(obj.items)])
    return None


def _replace(parent: Any, slot: _Slot, where: str) -> None:
    if slot is None:
        raise CorruptFile("The file's data refers to itself in a way that cannot be shown.",
                          f"{where}: a self-referencing tuple or set")
    kind, key = slot
    if kind in ("key", "index"):
        parent[key] = CYCLE
    elif kind == "args":
        parent.args = (*parent.args[:key], CYCLE, *parent.args[key + 1:])
    elif kind == "state":
        parent.state = CYCLE
    else:
        parent.items[key] = CYCLE

"""Checks on the value a pickle built: nesting depth, expanded size and self-references.

Done without recursion, so a hostile file nested 100,000 levels deep is refused instead of crashing
whoever walks the result, and data shared thousands of times over ("billion laughs") is refused
before a recursive walk could explode. A container that contains itself keeps its data, but the
inner reference is replaced by `CYCLE`, so code walking the tree recursively always ends.
"""

from __future__ import annotations

from typing import Any

from core.errors import CorruptFile
from core.model import Opaque

CYCLE = Opaque("<reference to itself>")
_Slot = tuple[str, Any] | None  # where a child sits in its parent (None: cannot be replaced)


def check_tree(root: Any, max_depth: int, max_nodes: int, where: str = "") -> None:
    """Refuse values nested deeper than `max_depth` or larger than `max_nodes` when expanded."""
    kids = _children(root)
    if kids is None:
        return
    done: dict[int, tuple[int, int]] = {}  # id -> (depth, expanded size)
    on_path = {id(root)}
    frames: list[list[Any]] = [[root, iter(kids), 0, 0]]  # obj, children, max depth, size
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
                frames.append([child, iter(grandkids), 0, 0])
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


def _children(obj: Any) -> list[tuple[_Slot, Any]] | None:
    """(slot, child) pairs of a container, or None for a leaf value."""
    if isinstance(obj, dict):
        pairs: list[tuple[_Slot, Any]] = []
        for k, v in obj.items():
            pairs += [(None, k), (("key", k), v)]
        attrs = getattr(obj, "attrs", None)
        return pairs + [(None, attrs)] if isinstance(attrs, dict) else pairs
    if isinstance(obj, list):
        return [(("index", i), v) for i, v in enumerate(obj)]
    if isinstance(obj, (tuple, set, frozenset)):
        return [(None, v) for v in obj]
    if isinstance(obj, Opaque):
        return ([(("args", i), v) for i, v in enumerate(obj.args)] + [(("state", 0), obj.state)]
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

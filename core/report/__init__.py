"""Rendering results for machines (JSON) and people (sizes, counts)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Protocol

PIPED_WIDTH = 1000  # columns when output goes to a file or pipe: long enough that nothing wraps


class Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def to_json(result: Result, indent: int | None = 2) -> str:
    return json.dumps(result.to_dict(), indent=indent, default=_fallback, allow_nan=True)


def _fallback(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return str(value)


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    units = ["KB", "MB", "GB", "TB", "PB"]
    exp = min(int(math.log(n, 1024)), len(units))
    return f"{n / 1024**exp:.1f} {units[exp - 1]}"


def human_count(n: int) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def terminal_console() -> Any:
    """A rich Console: a terminal's own width; piped output gets long lines (no name or number is
    wrapped mid-token) unless COLUMNS says otherwise."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPED_WIDTH, soft_wrap=True)
    return console

"""The located divergence and the task-level verdicts of a parity result, as report blocks and an
inline SVG of the error along depth (works from dicts, so a
saved JSON renders the same)."""

from __future__ import annotations

import html
import math
from typing import Any

LOCATE_HEADERS = ["depth", "module", "result", "max abs", "max rel", "type", "candidate op", "shape",
                  "cosine"]


def reason_blocks(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [("p", f"Why: {d['reason']}")] if d.get("reason") else []


def verdict_blocks(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    blocks: list[tuple[Any, ...]] = []
    profile = (d.get("settings") or {}).get("profile")
    verdicts = d.get("verdicts") or []
    if verdicts:
        rows = [[v["output"], "classes" if v["kind"] == "classes" else "embedding", v["rows"],
                 v["reason"], ("pass" if v["passed"] else "FAIL")
                 + ("" if v["decides"] else " (information)")] for v in verdicts]
        blocks += [("h2", "Task-level verdicts"),
                   ("table", ["output", "kind", "rows", "evidence", "verdict"], rows)]
    if profile:
        blocks.append(("p", f"Tolerance profile: {profile['description']}."))
    return blocks


def locate_blocks(d: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The 'Where it diverges' section: summary, notes, the per-depth table."""
    loc = d.get("locate")
    if not loc:
        return []
    lines = [loc["summary"], f"Compared on inputs {_shapes(loc['input_shapes'])}; each module's "
             "output is the last operation inside it."]
    if loc["approximate_mapping"]:
        lines.append("The mapping of the candidate's operations to modules is approximate.")
    blocks: list[tuple[Any, ...]] = [("h2", "Where it diverges"), ("p", " ".join(lines))]
    if loc["notes"]:
        blocks.append(("list", [f"Note: {n}" for n in loc["notes"]]))
    blocks.append(("table", LOCATE_HEADERS, [_row(r) for r in loc["rows"]]))
    return blocks


def _row(r: dict[str, Any]) -> list[Any]:
    return [r["depth"], r["module"], "OUT" if r["exceeds"] else "ok", _g(r["max_abs"]),
            _g(r["max_rel"]), r["module_type"], r["op"], str(r["shape"]), _g(r["cosine"], 6)]


def depth_svg(rows: list[dict[str, Any]], width: int = 640, height: int = 300) -> str:
    """Max abs difference (log scale) against depth; the first out-of-tolerance module marked red."""
    points = [(r["depth"], r["max_abs"], r["exceeds"], r["module"]) for r in rows
              if r["max_abs"] is not None]
    if not points:
        return ""
    floor = 1e-12
    logs = [math.log10(max(p[1], floor)) for p in points]
    y0, y1 = min(logs), max(max(logs), min(logs) + 1)
    x1 = max(max(p[0] for p in points), 2)
    pad = 50

    def at(depth: int, log: float) -> tuple[float, float]:
        return (pad + (depth - 1) / (x1 - 1) * (width - 2 * pad),
                height - pad - (log - y0) / (y1 - y0) * (height - 2 * pad))

    coords = [at(p[0], lg) for p, lg in zip(points, logs, strict=True)]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'class="depth-plot">',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
           'stroke="#888"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
           f'<text x="{pad}" y="{pad - 20}" font-size="12">max abs difference (log scale; '
           'zero drawn at 1e-12)</text>',
           f'<text x="{width - pad}" y="{height - 15}" font-size="12" text-anchor="end">depth '
           f'(module, in execution order; 1 .. {x1})</text>',
           '<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="'
           + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>']
    svg += _decade_ticks(y0, y1, lambda log: at(1, log)[1], pad)
    first = next((i for i, p in enumerate(points) if p[2]), None)
    if first is not None:
        x, y = coords[first]
        name = html.escape(str(points[first][3]))
        svg += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#d62728"/>',
                f'<text x="{x + (8 if x < width / 2 else -8):.1f}" y="{y + 18:.1f}" font-size="11" '
                f'fill="#d62728" text-anchor="{"start" if x < width / 2 else "end"}">first out '
                f'of tolerance: {name}</text>']
    return "\n".join(svg) + "\n</svg>"


def _decade_ticks(y0: float, y1: float, y_of: Any, pad: int) -> list[str]:
    """Labels at whole powers of ten on the y axis, at most about six."""
    low, high = math.ceil(y0), math.floor(y1)
    stride = max(1, math.ceil((high - low + 1) / 6))
    return [f'<text x="{pad - 4}" y="{y_of(e) + 4:.1f}" font-size="10" text-anchor="end">1e{e}</text>'
            for e in range(low, high + 1, stride)]


def _shapes(shapes: dict[str, list[int]]) -> str:
    return ", ".join(f"{k} {v}" for k, v in shapes.items()) or "-"


def _g(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)

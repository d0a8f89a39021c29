"""Markdown and HTML reports of parity and latency results (tables, plus the latency-vs-batch data
and an inline SVG plot in HTML; a parity report has its task-level verdicts and, when located,
where the two models diverge with an inline SVG of the error along depth, core.report.locate).
Works from `result.to_dict()`, so a saved JSON renders the same.

    Path("report.html").write_text(render_html(result))
"""

from __future__ import annotations

import html
import json
from typing import Any

from core.report import Result, human_bytes
from core.report.locate import depth_svg, locate_blocks, reason_blocks, verdict_blocks

Block = tuple[Any, ...]  # ("h1"|"h2"|"p", text) | ("list", [items]) | ("table", headers, rows)


def render_markdown(result: Result | dict[str, Any]) -> str:
    lines: list[str] = []
    for block in _blocks(_data(result)):
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        else:
            headers, rows = block[1], block[2]
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join("---" for _ in headers) + "|")
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                      for row in rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_html(result: Result | dict[str, Any]) -> str:
    data = _data(result)
    parts = []
    for block in _blocks(data):
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
        else:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                           + "</tr>" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if data.get("kind") == "parity" and data.get("locate"):
        at = next((i for i, p in enumerate(parts) if p == "<h2>Where it diverges</h2>"), None)
        if at is not None:
            parts.insert(at + 2, depth_svg(data["locate"]["rows"]))
    if data.get("kind") == "latency":
        parts.append(latency_svg(data["sweep"]))
        sweep = json.dumps(data["sweep"], allow_nan=False, default=str).replace("</", "<\\/")
        parts.append(f'<script type="application/json" id="latency-sweep">{sweep}</script>')
    title = "Parity check" if data.get("kind") == "parity" else "Latency check"
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
       "margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}")


def _data(result: Result | dict[str, Any]) -> dict[str, Any]:
    data = result if isinstance(result, dict) else result.to_dict()
    if data.get("kind") not in ("parity", "latency"):
        raise ValueError("render_markdown/render_html take a ParityResult or LatencyResult")
    return data


def report_blocks(result: Result | dict[str, Any]) -> list[Block]:
    """The report as blocks (headings, paragraphs, lists, tables), for other renderers."""
    return _blocks(_data(result))


def _blocks(data: dict[str, Any]) -> list[Block]:
    return _parity_blocks(data) if data["kind"] == "parity" else _latency_blocks(data)


def _parity_blocks(d: dict[str, Any]) -> list[Block]:
    ref, cand, s = d["reference"], d["candidate"], d["settings"]
    verdict = "PASS" if d["passed"] else "FAIL"
    tol = (f"atol {_g(s['atol'])}, rtol {_g(s['rtol'])}" if s.get("atol") is not None
           or s.get("rtol") is not None else "by dtype (float32 1e-4/1e-4, float16 1e-2/1e-2, "
           "bfloat16 2e-2/2e-2, integers exact)")
    blocks: list[Block] = [
        ("h1", f"Parity: {verdict}"),
        ("list", [f"Reference: {_runner_text(ref)}", f"Candidate: {_runner_text(cand)}",
                  f"Inputs: {s.get('inputs')} (seed {s.get('seed')})", f"Tolerance: {tol}"]
         + [f"Note: {n}" for n in d["notes"]])]
    blocks += reason_blocks(d)
    if d["failures"]:
        blocks += [("h2", "Failures"), ("list", d["failures"])]
    blocks += locate_blocks(d)
    headers = ["output", "shape", "dtype", "max abs", "max rel", "mean abs", "cosine",
               "outside tol", "NaN/Inf (ref/cand)", "atol/rtol", "result"]
    for case in d["cases"]:
        blocks.append(("h2", f"{case['label']}: {'pass' if case['passed'] else 'FAIL'}"))
        if case["error"]:
            blocks.append(("p", case["error"]))
        rows = [[o["name"] if o["name"] == o["candidate_name"] else
                 f"{o['name']} / {o['candidate_name']}",
                 _shape_text(o), _dtype_text(o), _g(o["max_abs_diff"]), _g(o["max_rel_diff"]),
                 _g(o["mean_abs_diff"]), _g(o["cosine_similarity"], 6),
                 f"{o['outside_count']} ({o['outside_percent']:.3g}%)",
                 f"{o['nonfinite_reference']}/{o['nonfinite_candidate']}",
                 f"{_g(o['atol'])}/{_g(o['rtol'])}", "pass" if o["passed"] else "FAIL"]
                for o in case["outputs"]]
        if rows:
            blocks.append(("table", headers, rows))
        if case["saved"]:
            blocks.append(("p", f"Inputs and outputs saved to {case['saved']}"))
    return blocks + verdict_blocks(d)


def _latency_blocks(d: dict[str, Any]) -> list[Block]:
    s = d["settings"]
    runs = f"{s['runs']} timed runs" if s.get("runs") else "timed runs"
    budget = f" (at most {s['budget_s']} s)" if s.get("budget_s") else ""
    blocks: list[Block] = [
        ("h1", "Latency"),
        ("p", f"Inputs: {s['inputs']}. Per runner and batch: one first run (reported alone), "
              f"{s['warmup']} warm-up runs, then {runs}{budget}, each timed with "
              f"{s['clock']}. Times in ms; throughput in samples/s; extra RSS: how far the "
              "process's resident memory rose above its level just before that runner's batch "
              "('-' where the platform cannot measure it per batch)."),
    ]
    if d["notes"]:
        blocks.append(("list", [f"Note: {n}" for n in d["notes"]]))
    headers = ["runner", "device", "threads", "load s", "batch", "first ms", "p50 ms", "p90 ms",
               "p95 ms", "p99 ms", "mean ms", "min ms", "max ms", "std ms", "runs", "samples/s",
               "extra RSS"]
    rows, errors = [], []
    for r in d["runners"]:
        info = r["runner"]
        for b in r["batches"]:
            if b["error"]:
                errors.append(f"{info['name']}, batch {b['batch']}: {b['error']}")
                continue
            st = b["stats"]
            threads = info.get("threads") or "default"
            rows.append([info["name"], info["device"], threads,
                         f"{info['load_seconds']:.3f}", b["batch"], _ms(b["first_ms"])]
                        + [_ms(st[k]) for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms",
                                                "min_ms", "max_ms", "std_ms")]
                        + [st["runs"], f"{st['throughput']:.1f}",
                           _rss_text(b.get("extra_rss_bytes"))])
    blocks.append(("table", headers, rows))
    if errors:
        blocks += [("h2", "Errors"), ("list", errors)]
    blocks.append(("h2", "Latency vs batch (p50 ms)"))
    sweep = d["sweep"]
    sizes = sorted({b for series in sweep.values() for b in series["batch"]})
    table = [[size] + [_ms(dict(zip(series["batch"], series["p50_ms"], strict=True)).get(size))
                       for series in sweep.values()] for size in sizes]
    blocks.append(("table", ["batch", *sweep], table))
    return blocks


def latency_svg(sweep: dict[str, dict[str, list[Any]]], width: int = 560, height: int = 300) -> str:
    """p50 latency against batch size (log-2 x axis), one line per runner."""
    import math

    points = {n: [(b, p) for b, p in zip(s["batch"], s["p50_ms"], strict=True) if p]
              for n, s in sweep.items()}
    every = [pt for pts in points.values() for pt in pts]
    if not every:
        return ""
    xs = [math.log2(max(b, 1)) for b, _ in every]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y1 = max(p for _, p in every) * 1.1
    pad, colors = 50, ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")

    def at(b: int, p: float) -> str:
        x = pad + (math.log2(max(b, 1)) - x0) / (x1 - x0) * (width - 2 * pad)
        return f"{x:.1f},{height - pad - p / y1 * (height - 2 * pad):.1f}"

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
           f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
           'stroke="#888"/>', f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" '
           'stroke="#888"/>', f'<text x="{pad}" y="{pad - 10}" font-size="12">p50 ms '
           f'(max {y1 / 1.1:.3g})</text>', f'<text x="{width - pad}" y="{height - 15}" '
           'font-size="12" text-anchor="end">batch</text>']
    for b in sorted({b for b, _ in every}):
        x = at(b, 0).split(",")[0]
        svg.append(f'<text x="{x}" y="{height - pad + 15}" font-size="11" '
                   f'text-anchor="middle">{b}</text>')
    for i, (name, pts) in enumerate(points.items()):
        color = colors[i % len(colors)]
        svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                   f'points="{" ".join(at(b, p) for b, p in pts)}"/>')
        svg.append(f'<text x="{width - pad}" y="{pad + 14 * i}" font-size="11" fill="{color}" '
                   f'text-anchor="end">{html.escape(name)}</text>')
    return "\n".join(svg) + "\n</svg>"


def _rss_text(value: int | None) -> str:
    return "-" if value is None else human_bytes(value)


def _runner_text(info: dict[str, Any]) -> str:
    return (f"{info['name']} on {info['device']}, loaded in {info['load_seconds']:.3f} s"
            + (f", {info['threads']} threads" if info.get("threads") else ""))


def _shape_text(o: dict[str, Any]) -> str:
    a, b = o["reference_shape"], o["candidate_shape"]
    return str(a) if a == b else f"{a} vs {b}"


def _dtype_text(o: dict[str, Any]) -> str:
    a, b = o["reference_dtype"], o["candidate_dtype"]
    return a if a == b else f"{a} vs {b}"


def _g(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

"""Terminal rendering of results with rich (tables, colours where the terminal supports them)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from core.formats.describe import summary_lines
from core.inspect import InspectResult, SectionView, Totals
from core.model import Finding
from core.report import human_bytes, human_count, shape_text, terminal_console
from core.scan import ScanResult

ROLE_STYLE = {"parameter": "", "buffer": "cyan", "unknown": "dim"}
SEVERITY_STYLE = {"dangerous": "bold red", "unknown": "yellow", "info": "dim"}


def print_inspect(result: InspectResult, console: Console | None = None) -> None:
    console = console or terminal_console()
    console.print(f"[bold]{escape(result.path)}[/bold]  {result.format}, {human_bytes(result.file_size)}"
                  f"{'; weights in section ' + repr(result.weights) if result.weights else ''}")
    for line in summary_lines(result.metadata):
        console.print(f"  {line}", markup=False, highlight=False)
    notes = [f for f in result.findings if _is_note(f)]
    code = [f for f in result.findings if not _is_note(f)]
    if code:
        print_findings(code, console)
    for f in notes:
        style = "yellow" if f.kind == "no-tensors" else "dim"
        console.print(f"Note: {f.message}", style=style, markup=False, highlight=False)
    for view in result.sections:
        if view.tensors or not result.name_filter:
            _print_section(view, console)
    console.print(f"[bold]Total[/bold]: {_totals_text(result.totals)}")
    if result.filter_note():
        style = "yellow" if not result.totals.tensors else ""
        console.print(escape(result.filter_note() or ""), style=style, highlight=False)
    if result.aliases:
        console.print(f"{len(result.aliases)} group(s) of tensors share storage (tied weights/views): "
                      + "; ".join(" = ".join(g) for g in result.aliases[:5]))


def _is_note(finding: Finding) -> bool:
    """Not a code reference: a file with no tensors, or something the reader left out."""
    return finding.kind == "no-tensors" or (finding.kind == "structure" and finding.severity == "info")


def _print_section(view: SectionView, console: Console) -> None:
    title = f"Section '{escape(view.name)}'"
    if view.common_prefix:
        title += f" (every key starts with '{view.common_prefix}')"
    if view.tensors:
        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        quantized = any(t.quantization is not None for t in view.tensors)
        encoded = any(t.stored_as for t in view.tensors)  # e.g. GGUF Q8_0, dequantized on read
        columns = [("name", "left"), ("shape", "left"), ("dtype", "left"), ("size", "right"),
                   ("role", "left")] + ([("quantization", "left")] if quantized else []) + (
                   [("stored as", "left")] if encoded else [])
        for col, justify in columns:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for t in view.tensors:
            cells = [escape(t.name), shape_text(t.shape), t.dtype, human_bytes(t.nbytes), t.role]
            if quantized:
                cells.append(t.quantization.describe() if t.quantization is not None else "")
            if encoded:
                cells.append(t.stored_as)
            table.add_row(*cells, style=ROLE_STYLE.get(t.role, ""))
        console.print(table)
        console.print(f"  {_totals_text(view.totals)}")
    else:
        console.print(f"[bold]{title}[/bold]")
    for key, value in view.values.items():
        console.print(f"  {key} = {_short(value)}", markup=False, highlight=False)


def _totals_text(totals: Totals) -> str:
    dtypes = ", ".join(f"{d} {human_bytes(n)}" for d, n in totals.bytes_by_dtype.items())
    return (f"{totals.tensors} tensors, {human_count(totals.parameters)} parameters, "
            f"{human_count(totals.buffers)} buffer elements, {human_bytes(totals.nbytes)}"
            + (f" ({dtypes})" if dtypes else ""))


def _short(value: object, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_findings(findings: list[Finding], console: Console) -> None:
    lines = [f"[{SEVERITY_STYLE.get(f.severity, '')}]{f.severity:>9}[/]  {escape(f.message)}"
             + (f" [dim]({escape(f.where)})[/dim]" if f.where else "") for f in findings]
    title = ("This file contains code references; it was opened safely without running them"
             if any(f.severity == "dangerous" for f in findings)
             else "This file holds Python objects besides tensors; nothing in it was run")
    console.print(Panel("\n".join(lines), title=title, border_style="yellow",
                        expand=console.is_terminal))


def print_scan(result: ScanResult, console: Console | None = None) -> None:
    console = console or terminal_console()
    for note in (f for f in result.findings if _is_note(f)):
        console.print(f"Note: {note.message}", style="dim", markup=False, highlight=False)
    code = [f for f in result.findings if not _is_note(f)]
    if not code:
        console.print(f"[green]No code references found[/green] in {result.path} ({result.format}).")
        return
    print_findings(code, console)
    if result.refused_by_weights_only:
        console.print("torch.load(weights_only=True) would refuse this file.")
    allow = result.allow_line()
    if allow:
        console.print("If you trust where this file came from, these lines let torch load it:")
        console.print(allow, markup=False, highlight=False, soft_wrap=True)
    elif result.dangerous:
        console.print("[bold red]Do not load this file with torch.load(weights_only=False)[/]: "
                      "it asks to run code, which could do anything on your computer. "
                      "`ckpt-studio convert` copies only its tensors.")


VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red"}


def print_check(result: Any, console: Console | None = None) -> None:
    """A parity or latency result as rich headings, lists and tables (the report's blocks)."""
    from core.report.checks import report_blocks

    console = console or terminal_console()
    for block in report_blocks(result):
        kind = block[0]
        if kind in ("h1", "h2"):
            verdict = next((v for v in VERDICT_STYLE if block[1].endswith(v)), None)
            style = VERDICT_STYLE[verdict] if verdict else "bold"
            console.print(f"[{style}]{escape(block[1])}[/]", highlight=False)
        elif kind == "p":
            console.print(escape(block[1]), highlight=False)
        elif kind == "list":
            for item in block[1]:
                console.print(f"  • {escape(str(item))}", highlight=False)
        else:
            console.print(_check_table(block[1], block[2]))


# columns a terminal table leaves to --report / --json, so that it stays readable at 80 columns
TERMINAL_DROPS = {"device", "threads", "load s", "p90 ms", "p95 ms", "mean ms", "min ms", "max ms",
                  "std ms", "runs", "dtype", "NaN/Inf (ref/cand)", "atol/rtol"}


def _check_table(headers: list[str], rows: list[list[Any]]) -> Table:
    """A report table for a terminal, without the columns that make it too wide to read (the
    report and --json keep every one)."""
    keep = [i for i, h in enumerate(headers) if h not in TERMINAL_DROPS]
    table = Table(show_edge=False, header_style="bold")
    if len(keep) < len(headers):
        table.caption = "all columns: --report FILE.html or --json"
    for n, i in enumerate(keep):
        cells = [str(r[i]) for r in rows]
        widest = max(len(w) for w in [*headers[i].split(), *cells])  # rich may squeeze a column to nothing
        table.add_column(escape(headers[i]), justify="left" if n == 0 else "right", overflow="fold",
                         min_width=min(12 if n == 0 else 9, widest))
    for row in rows:
        style = "red" if row and row[-1] == "FAIL" else ""
        table.add_row(*(escape(str(row[i])) for i in keep), style=style)
    return table

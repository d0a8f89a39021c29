"""Terminal rendering of results with rich (tables, colours where the terminal supports them)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from core.inspect import InspectResult, SectionView, Totals
from core.model import Finding
from core.report import human_bytes, human_count, shape_text
from core.scan import ScanResult

ROLE_STYLE = {"parameter": "", "buffer": "cyan", "unknown": "dim"}
SEVERITY_STYLE = {"dangerous": "bold red", "unknown": "yellow", "info": "dim"}


def print_inspect(result: InspectResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{escape(result.path)}[/bold]  {result.format}, {human_bytes(result.file_size)}"
                  f"{'; weights in section ' + repr(result.weights) if result.weights else ''}")
    if result.findings:
        print_findings(result.findings, console)
    for view in result.sections:
        _print_section(view, console)
    console.print(f"[bold]Total[/bold]: {_totals_text(result.totals)}")
    if result.aliases:
        console.print(f"{len(result.aliases)} group(s) of tensors share storage (tied weights/views): "
                      + "; ".join(" = ".join(g) for g in result.aliases[:5]))


def _print_section(view: SectionView, console: Console) -> None:
    title = f"Section '{escape(view.name)}'"
    if view.common_prefix:
        title += f" (every key starts with '{view.common_prefix}')"
    if view.tensors:
        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        quantized = any(t.quantization is not None for t in view.tensors)
        columns = [("name", "left"), ("shape", "left"), ("dtype", "left"), ("size", "right"),
                   ("role", "left")] + ([("quantization", "left")] if quantized else [])
        for col, justify in columns:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for t in view.tensors:
            cells = [escape(t.name), shape_text(t.shape), t.dtype, human_bytes(t.nbytes), t.role]
            if quantized:
                cells.append(t.quantization.describe() if t.quantization is not None else "")
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
    console.print(Panel("\n".join(lines), title="This file contains code references; it was "
                        "opened safely without running them", border_style="yellow"))


def print_scan(result: ScanResult, console: Console | None = None) -> None:
    console = console or Console()
    if not result.findings:
        console.print(f"[green]No code references found[/green] in {result.path} ({result.format}).")
        return
    print_findings(result.findings, console)
    if result.refused_by_weights_only:
        console.print("torch.load(weights_only=True) would refuse this file.")
    allow = result.allow_line()
    if allow:
        console.print("If you trust where this file came from, these lines let torch load it:")
        console.print(allow, markup=False, highlight=False, soft_wrap=True)
    elif result.dangerous:
        console.print("[bold red]Do not load this file with torch.load(weights_only=False)[/]: "
                      "it asks to run commands on your computer.")

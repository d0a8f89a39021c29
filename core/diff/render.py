"""Terminal rendering of a DiffResult with rich: one table per section, rows grouped by status."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.diff.remap import RemapSuggestion
from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, SHAPE, DiffResult, KeyDiff, SectionDiff
from core.diff.values import CLOSE, DIFFERENT, IDENTICAL, SKIPPED
from core.report import shape_text, terminal_console

LABELS = {ONLY_A: "only in A", ONLY_B: "only in B", SHAPE: "shape differs", DTYPE: "dtype differs",
          SAME: "same"}
MODEL_LABELS = {ONLY_A: "unexpected", ONLY_B: "missing", SHAPE: "size mismatch",
                DTYPE: "dtype (cast on load)", SAME: "same"}
VALUE_LABELS = {DIFFERENT: "different", CLOSE: "close", IDENTICAL: "identical",
                SKIPPED: "not compared"}
STYLES = {ONLY_A: "red", ONLY_B: "magenta", SHAPE: "bold red", DTYPE: "yellow", SAME: "dim",
          DIFFERENT: "red", CLOSE: "yellow", IDENTICAL: "green", SKIPPED: "dim"}


def print_diff(result: DiffResult, console: Console | None = None, limit: int = 50,
               all_keys: bool = False) -> None:
    """The sections' tables (`limit` rows per group, 0 = all), the suggestions, the summary line."""
    console = console or terminal_console()
    b_what = "model" if result.against_model else f"({result.format_b})"
    console.print(f"[bold]A[/bold] {escape(result.path_a)} ({result.format_a})\n"
                  f"[bold]B[/bold] {escape(result.path_b)} {b_what}")
    if result.rules:
        console.print("A's keys renamed first: " + "; ".join(r.describe() for r in result.rules))
    for section in result.sections:
        _print_section(result, section, console, limit, all_keys)
        if section.suggestions:
            print_suggestions(section.suggestions, console)
    style = "bold green" if result else "bold yellow"
    console.print(f"[{style}]{escape(result.summary())}[/]", soft_wrap=True)


def _groups(section: SectionDiff, all_keys: bool) -> list[tuple[str, list[KeyDiff]]]:
    out = [(s, section.with_status(s)) for s in (ONLY_A, ONLY_B, SHAPE, DTYPE)]
    same = section.with_status(SAME)
    for value_status in (DIFFERENT, CLOSE, SKIPPED):
        out.append((value_status, [k for k in same if k.values and k.values.status == value_status]))
    if all_keys:
        out.append((SAME, [k for k in same if not k.values or k.values.status == IDENTICAL]))
    return [(s, keys) for s, keys in out if keys]


def _print_section(result: DiffResult, section: SectionDiff, console: Console, limit: int,
                   all_keys: bool) -> None:
    labels = MODEL_LABELS if result.against_model else LABELS
    title = f"A '{section.section_a}' vs B '{section.section_b}': " + _counts_text(
        section, labels, result.values_compared)
    groups = _groups(section, all_keys)
    if not groups:
        console.print(f"[bold]{escape(title)}[/bold]")
        return
    table = Table(title=escape(title), title_justify="left", show_edge=False, header_style="bold")
    table.add_column("status", no_wrap=True)
    table.add_column("name", overflow="fold", min_width=12)
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")  # "=": the same shape and dtype as A
    if result.values_compared:
        table.caption = "max / mean: of |a-b|; rel L2: ||a-b|| / ||b||"
        for col in ("max", "mean", "rel L2", "cosine"):
            table.add_column(col, justify="right", no_wrap=True)
    for status, keys in groups:
        shown = keys if limit <= 0 else keys[:limit]
        for key in shown:
            table.add_row(*_row(key, labels.get(status, status), result.values_compared),
                          style=STYLES.get(status, ""))
        if len(shown) < len(keys):
            table.add_row("", f"… {len(keys) - len(shown)} more", style="dim")
    console.print(table)


def _counts_text(section: SectionDiff, labels: dict[str, str], values: bool) -> str:
    """The title's counts; with values, 'same' keys are counted by what their values did, so the
    title agrees with the rows below it."""
    counts = section.counts()
    parts = [f"{n} {labels[s]}" for s, n in counts.items() if n and not (values and s == SAME)]
    if values and counts[SAME]:
        found = section.value_counts()
        parts += [f"{found[s]} {VALUE_LABELS[s]}" for s in VALUE_LABELS if found[s]]
    return ", ".join(parts)


def _row(key: KeyDiff, label: str, values: bool) -> list[str]:
    name = escape(key.name if not key.name_a else f"{key.name_a} -> {key.name}")
    a = f"{shape_text(key.shape_a)} {key.dtype_a}" if key.shape_a is not None else ""
    b = f"{shape_text(key.shape_b)} {key.dtype_b}" if key.shape_b is not None else ""
    b = "=" if a and b == a else b
    cells = [label, name, a, b]
    if values:
        v = key.values
        if v is None or v.status == SKIPPED:
            cells += [escape(v.note) if v else "", "", "", ""]
        else:
            cosine = "undefined" if math.isnan(v.cosine) else f"{v.cosine:.6f}"  # a side all zero
            cells += [f"{v.max_abs:.3g}", f"{v.mean_abs:.3g}", f"{v.rel_l2:.3g}", cosine]
    return cells


def print_suggestions(suggestions: list[RemapSuggestion], console: Console) -> None:
    """One line per suggestion (apply them with --apply-remap)."""
    console.print("[bold]Remap suggestions[/bold] (apply with --apply-remap OUT.safetensors):")
    for i, s in enumerate(suggestions, start=1):
        how = "[yellow]ambiguous[/yellow]" if s.ambiguous else "unambiguous"
        note = f", also renames {s.breaks} key(s) that match now" if s.breaks else ""
        example = f" (e.g. {escape(s.examples[0][0])} -> {escape(s.examples[0][1])})" if s.examples \
            else ""
        console.print(f"  {i}. {escape(s.description)}: explains {s.explains} key(s), {how}{note}"
                      f"{example}", soft_wrap=True, highlight=False)

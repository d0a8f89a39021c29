"""The checks panel's small text fields (shapes, batch sizes, tolerances), parsed into what core's
checks take; a bad entry is one plain sentence (core.errors.CheckFailed) before anything runs."""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit

from core.errors import CheckFailed


def parse_points(text: str) -> list[dict[str, int]] | None:
    """'batch=1; batch=16' -> [{'batch': 1}, {'batch': 16}]; '' -> None (the default shapes)."""
    points = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        point = {}
        for pair in filter(None, (p.strip() for p in part.split(","))):
            name, sep, size = (s.strip() for s in pair.partition("="))
            if not sep or not name.isidentifier() or not size.isdigit():
                raise CheckFailed(f"'{pair}' is not a shape setting; write the shapes like "
                                  "'batch=1; batch=16' (dim=size, ';' between shapes).")
            point[name] = int(size)
        points.append(point)
    return points or None


def format_points(points: list[dict[str, int]]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in points if p)


def parse_batches(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.replace(";", ",").split(",") if b.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise CheckFailed(f"'{text}' is not a list of batch sizes; write it like '1,16,64'.")
    return sizes


def tolerance_value(edit: QLineEdit) -> float | None:
    """The number in a tolerance field; None when it is empty (core's default by dtype)."""
    text = edit.text().strip()
    return float(text) if text else None

"""The input spec of a model: names, dtypes and shapes with named dynamic dims, and its text syntax.

Text syntax (the CLI's `--input`; inputs separated by `;` or new lines):

    x: float32[batch(1..64), 3, 224, 224]; mask: bool[batch, 16]
    ids: int64[batch(1..8), seq(1..128)=16] in 0..999

A dim is a number (static) or a name (dynamic) with an optional range `(min..max)` (either end may
be left out: `(..64)`, `(2..)`) and an optional example size `=N`. A name used again shares its
range and size (`batch` above). `in LOW..HIGH` bounds the generated values (inclusive; integer
inputs default to 0..9, floating inputs are standard normal). A trailing `padded` makes the input a
padding mask (each row ones then zeros, the first row full, every row at least one 1), as a padded
batch of sequences has; a trailing `positions` makes each row count 0, 1, 2, ... (position ids):

    attention_mask: int64[batch, seq] padded; position_ids: int64[batch, seq] positions

Inputs are passed to `forward` positionally, in the order written.

Pure data and parsing: no torch. Sizes, example tensors, exporter forms and inference from a
model's layers are in core.inputs (which also re-exports everything public here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import ExportError

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
          "bool")
ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64",
           "int": "int32", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_MIN = 1
EXAMPLE = "x: float32[batch(1..64), 3, 224, 224]"
FILLS = ("padded", "positions")


@dataclass(frozen=True)
class Dim:
    """One axis: static (`value` only) or dynamic (`name`, optional `min`/`max`, `value` = example)."""

    name: str | None = None
    value: int | None = None
    min: int | None = None
    max: int | None = None

    @property
    def is_dynamic(self) -> bool:
        return self.name is not None and not (self.max is not None and self.lo == self.max)

    @property
    def lo(self) -> int:
        return self.min if self.min is not None else DEFAULT_MIN

    def within(self, size: int) -> bool:
        """Whether `size` lies in this dim's range."""
        return self.lo <= size and (self.max is None or size <= self.max)

    def clamp(self, size: int) -> int:
        """`size` moved into this dim's range."""
        size = max(size, self.lo)
        return min(size, self.max) if self.max is not None else size

    def to_text(self) -> str:
        if self.name is None:
            return str(self.value)
        text = self.name
        if self.min is not None or self.max is not None:
            text += f"({'' if self.min is None else self.min}..{'' if self.max is None else self.max})"
        return text + (f"={self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class InputSpec:
    """One input of `forward`: its name, dtype (torch name) and dims; `values` bounds example data;
    `fill` makes example data a padding mask ("padded") or position ids ("positions")."""

    name: str
    dtype: str
    dims: tuple[Dim, ...] = field(default_factory=tuple)
    values: tuple[float, float] | None = None
    fill: str | None = None

    @property
    def padded(self) -> bool:
        return self.fill == "padded"

    def to_text(self) -> str:
        dims = ", ".join(d.to_text() for d in self.dims)
        rng = f" in {_num(self.values[0])}..{_num(self.values[1])}" if self.values else ""
        return f"{self.name}: {self.dtype}[{dims}]{rng}" + (f" {self.fill}" if self.fill else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "values": self.values, "fill": self.fill,
                "dims": [{"name": d.name, "value": d.value, "min": d.min, "max": d.max}
                         for d in self.dims]}


def format_specs(specs: list[InputSpec]) -> str:
    """The text syntax for `specs` (parses back to the same specs)."""
    return "; ".join(s.to_text() for s in specs)



# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(r"[ \t\r]*(?:(?P<num>-?\d+(?:\.\d+)?(?:e-?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<dots>\.\.)|(?P<sym>[:\[\](),;=\n]))")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = depth = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                self.fail(f"'{text[pos:].lstrip()[0]}' is not expected here",
                          pos + len(text[pos:]) - len(text[pos:].lstrip()))
            kind = m.lastgroup or "sym"
            value = m.group(kind)
            depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(value, 0) if kind == "sym" else 0
            if value != "\n" or depth <= 0:  # a new line inside a shape is just white space
                self.tokens.append((kind, value, m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, problem: str, pos: int | None = None) -> None:
        if pos is None:
            pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        raise ExportError(f"The input spec is not valid: {problem} (at character {pos + 1}); "
                          f"write it like '{EXAMPLE}'.", f"{self.text}\n{' ' * pos}^")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, kind: str, what: str) -> str:
        if self.i >= len(self.tokens) or self.tokens[self.i][0] != kind:
            found = f"'{self.peek()}'" if self.peek() not in (None, "\n") else "the end"
            self.fail(f"expected {what} but found {found}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def expect(self, sym: str) -> None:
        if self.peek() != sym:
            found = f"'{self.peek()}'" if self.peek() not in (None, "\n") else "the end"
            self.fail(f"expected '{sym}' but found {found}")
        self.i += 1

    def int(self, what: str) -> int:
        pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text)
        text = self.take("num", what)
        if not re.fullmatch(r"\d+", text):
            self.fail(f"{what} must be a whole number of at least 0, not {text}", pos)
        return int(text)


def parse_specs(text: str) -> list[InputSpec]:
    """Parse the text syntax (see the module docstring); raises ExportError naming the problem."""
    p = _Parser(text)
    specs: list[InputSpec] = []
    while p.peek() is not None:
        if p.peek() in (";", "\n"):
            p.i += 1
            continue
        specs.append(_parse_one(p))
        if p.peek() not in (None, ";", "\n"):
            p.fail(f"expected ';' before the next input but found '{p.peek()}'")
    if not specs:
        p.fail("it names no input")
    return _resolve(specs, p)


def _parse_one(p: _Parser) -> InputSpec:
    name = p.take("name", "an input name")
    p.expect(":")
    pos = p.tokens[p.i][2] if p.i < len(p.tokens) else len(p.text)
    dtype = _dtype(p.take("name", f"a dtype for '{name}' such as float32"), p, pos)
    p.expect("[")
    dims: list[Dim] = []
    while p.peek() != "]":
        dims.append(_parse_dim(p))
        if p.peek() == ",":
            p.i += 1
        elif p.peek() != "]":
            p.fail(f"expected ',' or ']' in the shape of '{name}'")
    p.i += 1
    values = None
    if p.peek() == "in":
        p.i += 1
        lo = float(p.take("num", "the lowest value"))
        p.expect("..")
        values = (lo, float(p.take("num", "the highest value")))
        if values[0] > values[1]:
            p.fail(f"the value range of '{name}' goes from {_num(lo)} down to {_num(values[1])}")
    fill = p.peek() if p.peek() in FILLS else None
    if fill:
        p.i += 1
        if len(dims) != 2:
            p.fail(f"'{fill}' inputs ('{name}') have two dims, [batch, sequence]")
    return InputSpec(name, dtype, tuple(dims), values, fill)


def _parse_dim(p: _Parser) -> Dim:
    if p.i < len(p.tokens) and p.tokens[p.i][0] == "num":
        return Dim(value=p.int("a size"))
    name = p.take("name", "a size or a dim name")
    lo = hi = value = None
    if p.peek() == "(":
        p.i += 1
        if p.peek() != "..":
            lo = p.int(f"the smallest size of '{name}'")
        p.expect("..")
        if p.peek() != ")":
            hi = p.int(f"the largest size of '{name}'")
        p.expect(")")
        if lo is not None and hi is not None and lo > hi:
            p.fail(f"the range of '{name}' goes from {lo} down to {hi}")
    if p.peek() == "=":
        p.i += 1
        value = p.int(f"the example size of '{name}'")
    return Dim(name, value, lo, hi)


def _dtype(text: str, p: _Parser, pos: int) -> str:
    dtype = ALIASES.get(text.lower(), text.lower())
    if dtype not in DTYPES:
        import difflib

        close = difflib.get_close_matches(dtype, DTYPES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        p.fail(f"'{text}' is not a dtype ({hint}use one of {', '.join(DTYPES)})", pos)
    return dtype


def _resolve(specs: list[InputSpec], p: _Parser) -> list[InputSpec]:
    """Share ranges/sizes between uses of one dim name; check names, ranges and sizes."""
    seen: set[str] = set()
    merged: dict[str, Dim] = {}
    for spec in specs:
        if spec.name in seen:
            p.fail(f"the input '{spec.name}' is named twice", len(p.text))
        seen.add(spec.name)
        for dim in spec.dims:
            if dim.name is not None:
                merged[dim.name] = _merge(merged.get(dim.name), dim, p)
    out = []
    for spec in specs:
        dims = tuple(merged[d.name] if d.name is not None else d for d in spec.dims)
        out.append(replace(spec, dims=dims))
    return out


def _merge(old: Dim | None, new: Dim, p: _Parser) -> Dim:
    if old is None:
        merged = new
    else:
        fields = {}
        for key in ("value", "min", "max"):
            a, b = getattr(old, key), getattr(new, key)
            if a is not None and b is not None and a != b:
                what = {"value": "example sizes", "min": "minimums", "max": "maximums"}[key]
                p.fail(f"the dim '{new.name}' is given two different {what} ({a} and {b})",
                       len(p.text))
            fields[key] = a if a is not None else b
        merged = Dim(new.name, **fields)
    if merged.value is not None and not merged.within(merged.value):
        p.fail(f"the example size {merged.value} of '{merged.name}' is outside its range",
               len(p.text))
    return merged


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)

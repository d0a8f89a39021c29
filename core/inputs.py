"""Input specs for export and checks: names, dtypes and shapes with named dynamic dims.

Text syntax (the CLI's `--input`; inputs separated by `;` or new lines):

    x: float32[batch(1..64), 3, 224, 224]; mask: bool[batch, 16]
    ids: int64[batch(1..8), seq(1..128)=16] in 0..999

A dim is a number (static) or a name (dynamic) with an optional range `(min..max)` (either end may
be left out: `(..64)`, `(2..)`) and an optional example size `=N`. A name used again shares its
range and size (`batch` above). `in LOW..HIGH` bounds the generated values (inclusive; integer
inputs default to 0..9, floating inputs are standard normal). Inputs are passed to `forward`
positionally, in the order written.

Torch is imported inside the functions that need it; parsing and `shapes_to_test` work without it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from core.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
          "bool")
ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64",
           "int": "int32", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_MIN = 1
TEST_SIZES = (1, 16, 64)
EXAMPLE = "x: float32[batch(1..64), 3, 224, 224]"


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

    def to_text(self) -> str:
        if self.name is None:
            return str(self.value)
        text = self.name
        if self.min is not None or self.max is not None:
            text += f"({'' if self.min is None else self.min}..{'' if self.max is None else self.max})"
        return text + (f"={self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class InputSpec:
    """One input of `forward`: its name, dtype (torch name) and dims; `values` bounds example data."""

    name: str
    dtype: str
    dims: tuple[Dim, ...] = field(default_factory=tuple)
    values: tuple[float, float] | None = None

    def to_text(self) -> str:
        dims = ", ".join(d.to_text() for d in self.dims)
        rng = f" in {_num(self.values[0])}..{_num(self.values[1])}" if self.values else ""
        return f"{self.name}: {self.dtype}[{dims}]{rng}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "values": self.values,
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
    return InputSpec(name, dtype, tuple(dims), values)


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
    if merged.value is not None and not _within(merged, merged.value):
        p.fail(f"the example size {merged.value} of '{merged.name}' is outside its range",
               len(p.text))
    return merged


def _within(dim: Dim, size: int) -> bool:
    return dim.lo <= size and (dim.max is None or size <= dim.max)


def _clamp(size: int, dim: Dim) -> int:
    size = max(size, dim.lo)
    return min(size, dim.max) if dim.max is not None else size


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ---------------------------------------------------------------- sizes

def dynamic_dims(specs: list[InputSpec]) -> dict[str, Dim]:
    """Every dynamic dim by name, in order of first use."""
    return {d.name: d for s in specs for d in s.dims if d.is_dynamic and d.name is not None}


def example_sizes(specs: list[InputSpec]) -> dict[str, int]:
    """The example size of every named dim: its `=N`, else 2, 3, 4, ... (distinct, to keep
    torch.export from equating dims, and not 0/1, which torch.export specialises) within range."""
    sizes: dict[str, int] = {}
    for spec in specs:
        for dim in spec.dims:
            if dim.name is None or dim.name in sizes:
                continue
            sizes[dim.name] = dim.value if dim.value is not None else _clamp(2 + len(sizes), dim)
    return sizes


def shapes_to_test(specs: list[InputSpec]) -> list[dict[str, int]]:
    """Points to check through the dynamic dims: for each dynamic dim, 1/16/64 clipped into its
    range plus its min and max (when bounded), the other dims at their example size. Each point
    maps every named dim to a size (pass it as `overrides` to `example_inputs`)."""
    base = example_sizes(specs)
    points: list[dict[str, int]] = [] if dynamic_dims(specs) else [dict(base)]
    for name, dim in dynamic_dims(specs).items():
        sizes = {_clamp(s, dim) for s in TEST_SIZES}
        sizes |= {dim.lo} | ({dim.max} if dim.max is not None else set())
        for size in sorted(sizes):
            point = {**base, name: size}
            if point not in points:
                points.append(point)
    return points


def other_point(specs: list[InputSpec]) -> dict[str, int]:
    """Sizes where every dynamic dim differs from its example size (16 when in range, else its max
    or min): a second shape that catches a trace or export frozen to the example's shape."""
    point = example_sizes(specs)
    for name, dim in dynamic_dims(specs).items():
        for size in (_clamp(16, dim), dim.max, dim.lo):
            if size is not None and size != point[name]:
                point[name] = size
                break
    return point


def shape_of(spec: InputSpec, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(sizes[d.name] if d.name is not None else int(d.value or 0) for d in spec.dims)


def example_inputs(specs: list[InputSpec], overrides: dict[str, int] | None = None,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """One tensor per input (in spec order), made from `seed`; `overrides` sets named dims' sizes."""
    import torch

    sizes = example_sizes(specs)
    named = {d.name: d for s in specs for d in s.dims if d.name is not None}
    for name, size in (overrides or {}).items():
        if name not in named:
            raise ExportError(f"The input spec has no dim named '{name}'.",
                              f"dims: {', '.join(named) or 'none'}")
        if not _within(named[name], size):
            raise ExportError(f"The size {size} for '{name}' is outside its range "
                              f"({named[name].to_text()}).")
        sizes[name] = size
    gen = torch.Generator().manual_seed(seed)
    return {s.name: _random(s, shape_of(s, sizes), gen) for s in specs}


def _random(spec: InputSpec, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    import torch

    dtype = getattr(torch, spec.dtype)
    if spec.dtype == "bool":
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype.is_floating_point:
        if spec.values is None:
            return torch.randn(shape, generator=gen).to(dtype)
        lo, hi = spec.values
        return (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(dtype)
    lo, hi = spec.values or (0, 9)
    return torch.randint(int(lo), int(hi) + 1, shape, generator=gen).to(dtype)


# ---------------------------------------------------------------- exporter forms

def to_dynamic_shapes(specs: list[InputSpec]) -> dict[str, dict[int, Any] | None]:
    """torch.export `dynamic_shapes` per input name ({axis: torch.export.Dim} or None when static);
    a dim name used twice is one Dim object. Pass `tuple(result.values())` with positional args."""
    from torch.export import Dim as TorchDim

    made = {name: TorchDim(name, min=d.lo, **({"max": d.max} if d.max is not None else {}))
            for name, d in dynamic_dims(specs).items()}
    out: dict[str, dict[int, Any] | None] = {}
    for spec in specs:
        axes = {i: made[d.name] for i, d in enumerate(spec.dims) if d.is_dynamic and d.name}
        out[spec.name] = axes or None
    return out


def to_dynamic_axes(specs: list[InputSpec]) -> dict[str, dict[int, str]]:
    """The legacy ONNX exporter's `dynamic_axes` ({input name: {axis: dim name}})."""
    out = {}
    for spec in specs:
        axes = {i: d.name for i, d in enumerate(spec.dims) if d.is_dynamic and d.name}
        if axes:
            out[spec.name] = axes
    return out


# ---------------------------------------------------------------- inference

SPATIAL = {1: (128,), 2: (224, 224), 3: (16, 112, 112)}
BATCH = Dim("batch", None, 1, 64)


def infer_spec(module: nn.Module) -> list[InputSpec]:
    """A default spec from the model's first Linear/Conv/Embedding/RNN layer (batch 1..64).

    Raises ExportError when `forward` takes more than one tensor or no such layer exists."""
    name = _first_arg(module)
    for _, layer in module.named_modules():
        spec = _spec_for(layer, name)
        if spec is not None:
            return [spec]
    raise ExportError("Could not guess the model's input from its layers; give an input spec, "
                      f"e.g. '{EXAMPLE}'.")


def _spec_for(layer: Any, name: str) -> InputSpec | None:
    kind = getattr(layer, "original_name", None) or type(layer).__name__  # script modules too
    weight = getattr(layer, "weight", None)
    dtype = str(getattr(weight, "dtype", "torch.float32")).replace("torch.", "")
    dtype = dtype if dtype in DTYPES and dtype != "bool" else "float32"
    if kind in ("Linear", "Bilinear") and hasattr(layer, "in_features"):
        return InputSpec(name, dtype, (BATCH, Dim(value=int(layer.in_features))))
    match = re.fullmatch(r"(?:Lazy)?Conv(?:Transpose)?([123])d", kind)
    if match and getattr(layer, "in_channels", 0):
        spatial = tuple(Dim(value=v) for v in SPATIAL[int(match.group(1))])
        return InputSpec(name, dtype, (BATCH, Dim(value=int(layer.in_channels)), *spatial))
    if kind in ("Embedding", "EmbeddingBag") and hasattr(layer, "num_embeddings"):
        seq = Dim("seq", None, 1, 512)
        return InputSpec(name, "int64", (BATCH, seq), (0, int(layer.num_embeddings) - 1))
    if kind in ("LSTM", "GRU", "RNN") and hasattr(layer, "input_size"):
        seq, feat = Dim(value=16), Dim(value=int(layer.input_size))
        dims = (BATCH, seq, feat) if layer.batch_first else (seq, BATCH, feat)
        return InputSpec(name, dtype, dims)
    return None


def _first_arg(module: nn.Module) -> str:
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return "x"
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1:
        raise ExportError(f"The model takes {len(required)} inputs "
                          f"({', '.join(p.name for p in required)}); give an input spec for them, "
                          "e.g. 'x: float32[batch(1..64), 16]; mask: bool[batch, 16]'.")
    return required[0].name if required else (params[0].name if params else "x")

"""Input specs put to use: sizes to try, seeded example tensors, exporter forms, inference.

The spec itself (Dim, InputSpec) and its text syntax live in core.inputs.spec; every public name
there is re-exported here, so `from core.inputs import InputSpec, parse_specs` keeps working.

Torch is imported inside the functions that need it; parsing and `shapes_to_test` work without it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.inputs.spec import (
    ALIASES,
    DEFAULT_MIN,
    DTYPES,
    EXAMPLE,
    Dim,
    InputSpec,
    format_specs,
    parse_specs,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["ALIASES", "BATCH", "DEFAULT_MIN", "DTYPES", "EXAMPLE", "SPATIAL", "TEST_SIZES", "Dim",
           "InputSpec", "dynamic_dims", "example_inputs", "example_sizes", "format_specs",
           "infer_spec", "other_point", "parse_specs", "shape_of", "shapes_to_test",
           "to_dynamic_axes", "to_dynamic_shapes"]

TEST_SIZES = (1, 16, 64)


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
            sizes[dim.name] = dim.value if dim.value is not None else dim.clamp(2 + len(sizes))
    return sizes


def shapes_to_test(specs: list[InputSpec]) -> list[dict[str, int]]:
    """Points to check through the dynamic dims: for each dynamic dim, 1/16/64 clipped into its
    range plus its min and max (when bounded), the other dims at their example size. Each point
    maps every named dim to a size (pass it as `overrides` to `example_inputs`)."""
    base = example_sizes(specs)
    points: list[dict[str, int]] = [] if dynamic_dims(specs) else [dict(base)]
    for name, dim in dynamic_dims(specs).items():
        sizes = {dim.clamp(s) for s in TEST_SIZES}
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
        for size in (dim.clamp(16), dim.max, dim.lo):
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
        if not named[name].within(size):
            raise ExportError(f"The size {size} for '{name}' is outside its range "
                              f"({named[name].to_text()}).")
        sizes[name] = size
    gen = torch.Generator().manual_seed(seed)
    return {s.name: _random(s, shape_of(s, sizes), gen) for s in specs}


def _random(spec: InputSpec, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    import torch

    dtype = getattr(torch, spec.dtype)
    if spec.padded and len(shape) == 2:
        return _padding_mask(shape, gen).to(dtype)
    if spec.fill == "positions" and len(shape) == 2:
        return torch.arange(shape[1]).repeat(shape[0], 1).to(dtype)
    if spec.dtype == "bool":
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype.is_floating_point:
        if spec.values is None:
            return torch.randn(shape, generator=gen).to(dtype)
        lo, hi = spec.values
        return (torch.rand(shape, generator=gen) * (hi - lo) + lo).to(dtype)
    lo, hi = spec.values or (0, 9)
    return torch.randint(int(lo), int(hi) + 1, shape, generator=gen).to(dtype)


def _padding_mask(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Rows of ones then zeros: the first row full (the longest sequence), the others 1..seq long."""
    import torch

    rows, seq = shape
    lengths = torch.randint(1, max(seq, 1) + 1, (rows,), generator=gen)
    if rows:
        lengths[0] = seq
    return (torch.arange(seq).unsqueeze(0) < lengths.unsqueeze(1)).long()


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

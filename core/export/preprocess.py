"""Preprocessing in exports: recorded in every artefact that can hold it, optionally baked in.

Recorded: the spec's JSON (core.inputs.preprocess, with `baked` set) goes into ONNX
`metadata_props`, TorchScript `_extra_files` and `.pt2` `extra_files` under the names in
core.inputs.preprocess, where `inspect` finds it.

Baked (`ExportOptions.bake_preprocess`): the model is wrapped so that dtype conversion, layout
(NHWC -> NCHW), scale, channel order and mean/std are its first ops, and its input becomes the
raw pixels (the spec's dtype and layout); models with one input only. Resize and centre crop are not baked:
their result depends on the size of the image a service decodes, which the graph's fixed input
shape cannot express, and antialiased resizing has no portable ONNX form; they stay recorded.
`normalise` applies exactly the baked ops in eager torch, so checks can feed raw pixels to an
artefact and `normalise(raw)` to the bare model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.inputs import Dim, InputSpec
from core.inputs.preprocess import (
    EXTRA_FILE,
    METADATA_KEY,
    Preprocess,
    check_against_input,
    with_tokenizer_files,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_WRAPPER: list[type] = []  # the wrapper class, made once on first use (torch is imported lazily)


def prepare(model: Any, specs: list[InputSpec], spec: Preprocess | None,
            bake: bool) -> tuple[Any, list[InputSpec], Preprocess | None]:
    """Check `spec` against the model's inputs; bake it when asked. Returns the model and input
    specs to export and the spec to record (None when there is none)."""
    if spec is None:
        if bake:
            raise ExportError("Baking preprocessing needs a preprocessing spec (--preprocess).")
        return model, specs, None
    if spec.kind == "text":
        if bake:
            raise ExportError("Text preprocessing (a tokenizer) is recorded only; it cannot be baked "
                              "into the graph.")
        return model, specs, with_tokenizer_files(spec)
    index = input_index(specs, spec)
    check_against_input(spec, specs[index])
    if not bake:
        return model, specs, spec
    if len(specs) != 1:
        raise ExportError(f"Baking preprocessing works for models with one input; this one has "
                          f"{len(specs)}. Export with the preprocessing recorded only.")
    return baked_model(model, spec), [raw_input_spec(specs[0], spec)], replace(spec, baked=True)


def input_index(specs: list[InputSpec], spec: Preprocess) -> int:
    """Which of `specs` the preprocessing feeds: the one it names, else the first."""
    names = [s.name for s in specs]
    if spec.input is None:
        if not names:
            raise ExportError("The model has no inputs for the preprocessing to feed.")
        return 0
    if spec.input not in names:
        raise ExportError(f"The preprocessing names the input '{spec.input}', which the model does "
                          f"not have (it has {', '.join(names) or 'none'}).")
    return names.index(spec.input)


def raw_input_spec(model_input: InputSpec, spec: Preprocess) -> InputSpec:
    """The input a baked artefact takes: raw pixels in the spec's dtype and layout."""
    n, c, h, w = model_input.dims
    dims: tuple[Dim, ...] = (n, h, w, c) if spec.layout == "nhwc" else (n, c, h, w)
    return replace(model_input, dtype=spec.dtype, dims=dims, values=(0.0, 255.0), fill=None)


def normalise(raw: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """Raw pixels (the spec's dtype and layout) to the model's float32 NCHW input."""
    import torch

    x = raw.to(torch.float32)
    if spec.layout == "nhwc":
        x = x.permute(0, 3, 1, 2)
    x = x * spec.scale
    if spec.channel_order == "bgr":
        x = x.index_select(1, torch.tensor([2, 1, 0]))
    shape = (1, spec.channels, 1, 1)
    mean = torch.tensor(spec.means(), dtype=torch.float32).reshape(shape)
    std = torch.tensor(spec.stds(), dtype=torch.float32).reshape(shape)
    return (x - mean) / std


def baked_model(model: nn.Module, spec: Preprocess) -> nn.Module:
    """`model` (one input) behind the spec's ops: it takes raw pixels."""
    if not _WRAPPER:
        _WRAPPER.append(_make_wrapper())
    return _WRAPPER[0](model, spec)


def _make_wrapper() -> type:
    import torch
    from torch import nn

    class BakedPreprocess(nn.Module):
        """The same ops as `normalise`, in a module so exporters record them."""

        def __init__(self, model: nn.Module, spec: Preprocess) -> None:
            super().__init__()
            self.model = model
            self.nhwc = spec.layout == "nhwc"
            self.bgr = spec.channel_order == "bgr"
            self.scale = spec.scale
            shape = (1, spec.channels, 1, 1)
            self.register_buffer("preprocess_mean", torch.tensor(spec.means()).reshape(shape))
            self.register_buffer("preprocess_std", torch.tensor(spec.stds()).reshape(shape))
            self.register_buffer("preprocess_order", torch.tensor([2, 1, 0]))
            self.training = model.training

        def forward(self, pixels: torch.Tensor) -> Any:
            x = pixels.to(torch.float32)
            if self.nhwc:
                x = x.permute(0, 3, 1, 2)
            x = x * self.scale
            if self.bgr:
                x = x.index_select(1, self.preprocess_order)
            x = (x - self.preprocess_mean) / self.preprocess_std
            return self.model(x)

    return BakedPreprocess


# ---------------------------------------------------------------- recording

def extra_files(spec: Preprocess | None) -> dict[str, str]:
    """TorchScript `_extra_files` / .pt2 `extra_files` that record `spec` ({} without one)."""
    return {EXTRA_FILE: spec.to_json()} if spec is not None else {}


def record_onnx(path: Path, spec: Preprocess | None) -> None:
    """Put `spec` into the ONNX file's metadata_props (external data references stay as they are)."""
    if spec is None:
        return
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
    entry.value = spec.to_json()
    onnx.save_model(model, str(path))

"""A Hugging Face folder as an exportable model: the transformers model for a task, its weights
loaded strictly, wrapped so that `forward` takes the task's inputs positionally and returns the
model's outputs as a tuple, with input specs that respect the config and the outputs' own names.

    hf = load_hf_model("path/to/folder", task=None, pooling=False)
    export(hf.module, hf.specs, ["onnx"], out, ExportOptions(output_names=tuple(hf.output_names)))

Inputs, as Optimum's OnnxConfig builds them per task: text models take those of `input_ids`,
`attention_mask`, `token_type_ids` their `forward` accepts (`token_type_ids` only where the config
has more than one token type), with dynamic batch and sequence up to the config's maximum positions;
causal LMs also `position_ids` (so left-padded batches work) and run without a KV cache; image
models take `pixel_values` at the config's image size. The wrapper takes them positionally in that
order (its parameters are slots: the i-th input goes to the i-th name in `input_names`).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError
from core.hf.config import build_for_task, check_task, folder_config, infer_task, model_folder
from core.inputs import Dim, InputSpec

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from core.arch import LoadReport
    from core.export import ExportOptions

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SKIPPED_OUTPUTS = {"hidden_states", "attentions", "cross_attentions", "past_key_values", "loss"}
# position embeddings of these start after the padding index (RoBERTa's create_position_ids)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "longformer"}


@dataclass
class HFModel:
    """What `load_hf_model` gives: the wrapped module, its inputs and outputs, and the evidence."""

    module: nn.Module
    specs: list[InputSpec]
    output_names: list[str]
    task: str
    folder: Path
    model_class: str
    report: LoadReport | None = None
    notes: list[str] = field(default_factory=list)

    def export_options(self, **overrides: Any) -> ExportOptions:
        """ExportOptions for this model: its output names, the legacy ONNX exporter (as Optimum;
        ~10x faster than torch.export here) and verification at a second shape that must match."""
        from core.export import ExportOptions

        fields = {"name": self.folder.resolve().name or "model", "onnx_exporter": "legacy",
                  "check_shapes": True, "output_names": tuple(self.output_names)}
        return ExportOptions(**(fields | overrides))

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "task": self.task, "model_class": self.model_class,
                "output_names": self.output_names, "notes": self.notes,
                "weights": self.report.to_dict() if self.report else None}


def load_hf_model(path: str | Path, task: str | None = None, *, pooling: bool = False,
                  weights: str | Path | None = None, strict: bool = True) -> HFModel:
    """The model of a Hugging Face folder (or of a weights file beside a config.json) for `task`
    (default: from `architectures`); `pooling` appends the folder's sentence-transformers pooling."""
    from core.hf.pooling import pooled_module, transformer_folder

    folder = model_folder(path)
    if folder is None:
        raise ExportError(f"'{Path(path).name}' has no config.json beside it, so its architecture "
                          "is unknown; give it with --arch.")
    pooling_folder, folder = folder, transformer_folder(folder) if pooling else folder
    config = folder_config(folder)
    task = check_task(task or infer_task(config))
    model = build_for_task(folder, config, task)
    report = _load(model, folder, path if Path(path).is_file() else weights, strict)
    specs = input_specs(model, config, task)
    wrapper = wrap(model, specs, task)
    notes = [f"{report.renamed} names renamed by transformers' rules (the saved layout differs "
             "from the class's)"] if report.renamed else []
    if pooling:
        wrapper, note = pooled_module(wrapper, pooling_folder)
        notes.append(note)
    return HFModel(wrapper, specs, list(wrapper.output_names), task, folder,
                   type(model).__name__, report, notes)


def _load(model: nn.Module, folder: Path, weights: str | Path | None,
          strict: bool) -> LoadReport:
    from core.arch import load_weights
    from core.formats import open_checkpoint
    from core.hf.load import apply_rules, load_folder_weights, with_renames

    source = Path(weights) if weights is not None else folder
    if strict:
        return load_folder_weights(model, source, folder.name)
    return apply_rules(model, load_weights(model, *with_renames(model, open_checkpoint(source))))


def input_specs(model: nn.Module, config: dict[str, Any], task: str) -> list[InputSpec]:
    """The task's inputs that `forward` accepts, sized by the config."""
    accepted = set(inspect.signature(model.forward).parameters)
    if task == "image-classification" or ("pixel_values" in accepted
                                          and "input_ids" not in accepted):
        vision = config.get("vision_config") if isinstance(config.get("vision_config"), dict) \
            else config
        size = _image_size(vision.get("image_size", 224))
        channels = int(vision.get("num_channels", 3))
        return [InputSpec("pixel_values", "float32", (Dim("batch", None, 1, None),
                          Dim(value=channels), Dim(value=size[0]), Dim(value=size[1])))]
    if "input_ids" not in accepted:
        raise ExportError(f"{type(model).__name__} takes neither input_ids nor pixel_values, so "
                          "its inputs cannot be built from the config; give them with --input.")
    batch = Dim("batch", None, 1, None)
    seq = Dim("sequence", 8, 1, _max_positions(config))
    vocab = int(config.get("vocab_size") or 2)
    specs = [InputSpec("input_ids", "int64", (batch, seq), (0, vocab - 1))]
    if "attention_mask" in accepted:
        specs.append(InputSpec("attention_mask", "int64", (batch, seq), fill="padded"))
    types = int(config.get("type_vocab_size") or 0)
    if "token_type_ids" in accepted and types > 1:
        specs.append(InputSpec("token_type_ids", "int64", (batch, seq), (0, types - 1)))
    if task == "causal-lm" and "position_ids" in accepted:  # as Optimum: batched left padding
        specs.append(InputSpec("position_ids", "int64", (batch, seq), fill="positions"))
    return specs


def _max_positions(config: dict[str, Any]) -> int | None:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len"):
        value = text.get(key)
        if isinstance(value, int) and value > 0:
            if config.get("model_type") in _OFFSET_POSITIONS:
                value -= int(config.get("pad_token_id") or 0) + 1
            return max(value, 8)
    return None


def _image_size(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return int(value), int(value)


def wrap(model: nn.Module, specs: list[InputSpec], task: str) -> nn.Module:
    """The model with positional inputs in spec order and a tuple of its named outputs."""
    import torch

    from core.inputs import example_inputs

    names = [s.name for s in specs]
    extra = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters \
        else {}
    wrapper = _classes()["vision" if names == ["pixel_values"] else "text"](model, names, extra)
    with torch.no_grad():
        out = model(**example_inputs(specs, seed=0), **extra, return_dict=True)
    wrapper.output_names = [k for k, v in out.items() if k not in SKIPPED_OUTPUTS
                            and isinstance(v, torch.Tensor)]
    if not wrapper.output_names:
        raise ExportError(f"{type(model).__name__} gives no tensor output for the {task} task.")
    return wrapper.eval()


@functools.cache
def _classes() -> dict[str, type]:
    """The wrapper classes, made on first use so that importing this module needs no torch."""
    from torch import nn

    class Wrapped(nn.Module):
        """Positional inputs (in `input_names` order) -> a tuple of the outputs in `output_names`."""

        def __init__(self, model: Any, input_names: list[str], extra: dict[str, Any]) -> None:
            super().__init__()
            self.model = model
            self.input_names = list(input_names)
            self.extra = dict(extra)
            self.output_names: list[str] = []

        def _outputs(self, *args: Any) -> tuple[Any, ...]:
            inputs = dict(zip(self.input_names, args, strict=False))
            out = self.model(**inputs, **self.extra, return_dict=True)
            return tuple(out[name] for name in self.output_names)

    class TextModel(Wrapped):
        def forward(self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                    position_ids: Any = None) -> tuple[Any, ...]:
            return self._outputs(input_ids, attention_mask, token_type_ids, position_ids)

    class VisionModel(Wrapped):
        def forward(self, pixel_values: Any) -> tuple[Any, ...]:
            return self._outputs(pixel_values)

    return {"text": TextModel, "vision": VisionModel}

"""What a checkpoint is, with the evidence: its Hugging Face config when it has one, otherwise the
family its tensor names and shapes show (core.hf.families), the config values those shapes
determine, and the ones they cannot, stated as such.

    result = identify("path/to/folder_or_file")
    print(result.to_dict())

Only headers are read (core.formats.open_checkpoint); nothing is imported from the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CheckpointError
from core.hf.families import Match, recognise

# config keys worth showing beside the summary, when the config has them
CONFIG_KEYS = ("model_type", "architectures", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
               "num_attention_heads", "n_head", "intermediate_size", "n_inner", "vocab_size",
               "max_position_embeddings", "n_positions", "type_vocab_size", "image_size",
               "patch_size", "num_channels", "num_key_value_heads", "torch_dtype", "dtype")


@dataclass
class Identification:
    """`source`: "config.json" | "key layout" | "none" (nothing recognised)."""

    path: str
    source: str
    family: str | None = None
    model_type: str | None = None
    architectures: list[str] = field(default_factory=list)
    task: str | None = None
    determined: dict[str, Any] = field(default_factory=dict)
    undetermined: dict[str, str] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    tensors: int = 0

    @property
    def recognised(self) -> bool:
        return self.source != "none"

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "kind": "identify", "recognised": self.recognised}


def identify(path: str | Path) -> Identification:
    """Identify a model folder, a weights file beside a config.json, or a bare checkpoint."""
    from core.formats import open_checkpoint
    from core.hf.config import model_folder

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist.")
    folder = model_folder(path)
    checkpoint = None
    try:
        checkpoint = open_checkpoint(path)
    except CheckpointError:
        if folder is None:
            raise
    shapes = _shapes(checkpoint) if checkpoint is not None else {}
    layout = recognise(shapes)
    if folder is not None:
        result = _from_config(path, folder, layout)
        if checkpoint is None:
            result.evidence.append("the folder holds no weights file transformers would load")
    elif layout is not None:
        result = _from_layout(path, layout)
    else:
        result = Identification(str(path), "none", evidence=[
            f"no config.json, and the {len(shapes)} tensor names match none of the known "
            "layouts (BERT, RoBERTa, GPT-2, LLaMA, ViT, CLIP)"])
    result.tensors = len(shapes)
    return result


def _shapes(checkpoint: Any) -> dict[str, tuple[int, ...]]:
    section = checkpoint.sections.get(checkpoint.weights) if checkpoint.weights else None
    if section is None:
        return {}
    return {name: tuple(info.shape) for name, info in section.tensors.items()}


def _from_config(path: Path, folder: Path, layout: Match | None) -> Identification:
    from core.formats.folder import read_config
    from core.hf.config import infer_task

    config = read_config(folder / "config.json")
    names = [n for n in config.get("architectures") or [] if isinstance(n, str)]
    result = Identification(str(path), "config.json", model_type=_text(config.get("model_type")),
                            architectures=names, task=infer_task(config))
    result.determined = {k: config[k] for k in CONFIG_KEYS[2:] if _plain(config.get(k))}
    result.family = layout.family if layout else result.model_type
    result.evidence.append(f"config.json: model_type '{result.model_type}'"
                           + (f", architectures {', '.join(names)}" if names else ""))
    if "auto_map" in config:
        result.evidence.append("config.json has 'auto_map': the model's own classes are Python "
                               "code in the folder, which is never run here")
    if layout is not None:
        result.evidence += layout.evidence
        result.evidence += _disagreements(config, layout)
    return result


def _disagreements(config: dict[str, Any], layout: Match) -> list[str]:
    """Values the weights' shapes determine that differ from the config's."""
    out = []
    for key, value in layout.determined.items():
        if key in config and _plain(config[key]) and value is not None and config[key] != value:
            out.append(f"the weights say {key} = {value} but config.json says {config[key]}: "
                       "they do not belong together")
    return out


def _from_layout(path: Path, layout: Match) -> Identification:
    from core.hf.config import infer_task

    result = Identification(str(path), "key layout", family=layout.family,
                            model_type=layout.model_type, determined=dict(layout.determined),
                            undetermined=dict(layout.undetermined), evidence=list(layout.evidence))
    if layout.head:
        result.architectures = [layout.head]
        result.task = infer_task({"architectures": [layout.head]})
    if layout.prefix:
        result.evidence.append(f"every name starts with the prefix '{layout.prefix}'")
    result.evidence.append("no config.json: the values below come from the tensor shapes only")
    return result


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) or (
        isinstance(value, list) and all(isinstance(v, (int, str)) for v in value))


def render(result: Identification) -> str:
    """A few plain lines for the terminal."""
    lines = [f"{result.path}: " + (f"{result.family or result.model_type} "
                                   f"(model_type '{result.model_type}')" if result.recognised
                                   else "not recognised")]
    if result.architectures:
        lines.append(f"  architecture: {', '.join(result.architectures)}"
                     + (f"; task: {result.task}" if result.task else ""))
    lines.append(f"  from: {result.source}; {result.tensors} tensors")
    if result.determined:
        lines.append("  " + ("config" if result.source == "config.json" else
                             "determined by the shapes") + ":")
        lines += [f"    {k} = {v}" for k, v in result.determined.items() if v is not None]
    if result.undetermined:
        lines.append("  not determined by the shapes (never guessed):")
        lines += [f"    {k}: {why}" for k, why in result.undetermined.items()]
    lines.append("  evidence:")
    lines += [f"    - {e}" for e in result.evidence]
    return "\n".join(lines)

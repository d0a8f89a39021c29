"""A model folder (Hugging Face layout) opens as the weights inside it, with its config's summary.

The weights are looked for in the order transformers' `from_pretrained` uses for a local folder:
model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json.
config.json is read as data only (never `trust_remote_code`); a config that cannot be read does
not stop the weights from opening, it becomes a finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import CheckpointError
from core.model import Checkpoint, Finding

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024
_OTHER_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".pt2")
# summary key -> the names configs use for it, first found wins (GPT-2 and T5 use their own)
SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "model_type": ("model_type",),
    "architectures": ("architectures",),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "vocab_size": ("vocab_size",),
    "torch_dtype": ("torch_dtype", "dtype"),
}


def weights_in(folder: Path) -> Path:
    """The weights file transformers would load from this folder; one sentence if there is none."""
    for name in WEIGHT_FILES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    try:
        others = sorted(p.name for p in folder.iterdir() if p.suffix in _OTHER_WEIGHTS and p.is_file())
    except OSError:
        others = []
    hint = (f" It has {', '.join(repr(n) for n in others[:3])}: open that file instead."
            if others else "")
    raise CheckpointError(
        f"The folder '{folder.name}' holds no model weights: expected one of "
        f"{', '.join(WEIGHT_FILES)}.{hint}", f"{folder}")


def attach_config(checkpoint: Checkpoint, folder: Path) -> Checkpoint:
    """Record the folder and its config's summary in the checkpoint's metadata."""
    checkpoint.metadata["folder"] = str(folder)
    checkpoint.metadata["weights_file"] = checkpoint.path.name
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        return checkpoint
    try:
        config = read_config(config_path)
    except CheckpointError as exc:
        checkpoint.findings.append(Finding(
            kind="structure", name=CONFIG_FILE, severity="info", blocks_weights_only=False,
            message=f"{exc.message} The weights were opened without it."))
        return checkpoint
    checkpoint.metadata["config"] = summarise(config)
    return checkpoint


def read_config(path: Path) -> dict[str, Any]:
    """config.json as a dict, size-bounded; a damaged one is one sentence."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"The folder's {CONFIG_FILE} is too large to be a model config.")
    try:
        config = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"The folder's {CONFIG_FILE} could not be read as JSON.",
                              str(exc)) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"The folder's {CONFIG_FILE} is not a JSON object.")
    return config


def summarise(config: dict[str, Any]) -> dict[str, Any]:
    """model_type, architectures, hidden size, layers, vocab and dtype, where the config has them.

    Multimodal configs keep the language model's sizes in `text_config`; those are used when the
    top level lacks them.
    """
    nested = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    summary: dict[str, Any] = {}
    for key, names in SUMMARY_KEYS.items():
        for source in (config, nested):
            value = next((source[n] for n in names if _plain(source.get(n))), None)
            if value is not None:
                summary[key] = value
                break
    return summary


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, str) for v in value)
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)

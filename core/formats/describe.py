"""A few plain lines about what a file is, from its metadata: a model folder's config, an ONNX
graph's inputs/outputs/opsets, a GGUF model's architecture. Shown above the tensor tables."""

from __future__ import annotations

from typing import Any

CONFIG_LABELS = {"model_type": "model type", "architectures": "architectures",
                 "hidden_size": "hidden size", "num_hidden_layers": "layers",
                 "vocab_size": "vocabulary", "torch_dtype": "dtype"}


def summary_lines(metadata: dict[str, Any]) -> list[str]:
    """Human-readable lines for the metadata keys the readers set; [] when none apply."""
    lines: list[str] = []
    if metadata.get("folder"):
        lines.append(f"Model folder {metadata['folder']} (weights: {metadata.get('weights_file')})")
    config = metadata.get("config")
    if isinstance(config, dict) and config:
        parts = [f"{label} {_text(config[key])}" for key, label in CONFIG_LABELS.items()
                 if key in config]
        lines.append("Config: " + ", ".join(parts))
    lines += _onnx_lines(metadata)
    lines += _gguf_lines(metadata)
    return lines


def _text(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _onnx_lines(metadata: dict[str, Any]) -> list[str]:
    if "graph_inputs" not in metadata:
        return []
    producer = " ".join(str(metadata[k]) for k in ("producer_name", "producer_version")
                        if metadata.get(k))
    opsets = ", ".join(f"{d} {v}" for d, v in (metadata.get("opset_import") or {}).items())
    lines = [f"ONNX IR version {metadata.get('ir_version', '?')}, opsets: {opsets or 'none'}"
             + (f", made by {producer}" if producer else "")]
    lines.append("Inputs: " + (", ".join(map(value_text, metadata["graph_inputs"])) or "none"))
    lines.append("Outputs: " + (", ".join(map(value_text, metadata.get("graph_outputs", [])))
                                or "none"))
    lines.append(f"{metadata.get('graph_nodes', 0)} nodes, {metadata.get('constant_nodes', 0)} "
                 f"Constant nodes, {metadata.get('subgraphs', 0)} subgraphs")
    return lines


def value_text(info: dict[str, Any]) -> str:
    """E.g. "x: float32[batch, 3, 224, 224]"; an unknown dim shows as "?"."""
    shape = info.get("shape")
    dims = "" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    kind = info.get("dtype") or info.get("type") or "?"
    return f"{info.get('name', '')}: {kind}{dims}"


def _gguf_lines(metadata: dict[str, Any]) -> list[str]:
    if "gguf_version" not in metadata:
        return []
    arch = metadata.get("architecture") or "unknown architecture"
    name = metadata.get("model_name")
    lines = [f"GGUF v{metadata['gguf_version']}: {arch}" + (f" ({name})" if name else "")]
    hyper = metadata.get("hyperparameters") or {}
    if hyper:
        lines.append("Hyper-parameters: " + ", ".join(f"{k} {_text(v)}" for k, v in hyper.items()))
    types = metadata.get("ggml_types") or {}
    if types:
        lines.append("Stored as: " + ", ".join(f"{t} x{n}" for t, n in types.items()))
    return lines

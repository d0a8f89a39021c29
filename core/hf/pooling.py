"""Sentence-transformers folders: the pooling (and normalisation) that modules.json lists, put inside
the exported graph so the artefact returns the sentence embedding directly.

modules.json is a list of modules run in order: a Transformer (the Hugging Face model in `path`,
'' for the folder itself), then Pooling (its config.json: `pooling_mode_*` flags), then optionally
Normalize (L2). The formulas are sentence-transformers' own (models/Pooling.py):
  mean: sum(token_embeddings * mask) / max(sum(mask), 1e-9)
  max: the largest value over the unmasked tokens
  cls: the first token's embedding
  mean_sqrt_len: sum(token_embeddings * mask) / sqrt(max(sum(mask), 1e-9))
several modes are concatenated in that library's order (cls, max, mean, mean_sqrt_len).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

MODULES_FILE = "modules.json"
MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")
_ST = "sentence_transformers.models."


def read_modules(folder: Path) -> list[dict[str, Any]]:
    """modules.json as a list of {type, path}; one sentence when the folder has none."""
    path = folder / MODULES_FILE
    if not path.is_file():
        raise ExportError(f"The folder '{folder.name}' has no {MODULES_FILE}, so it is not a "
                          "sentence-transformers model and has no pooling to put in the graph.")
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"The folder's {MODULES_FILE} could not be read as JSON.", str(exc)) \
            from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ExportError(f"The folder's {MODULES_FILE} is not a list of modules.")
    return sorted(modules, key=lambda m: int(m.get("idx", 0)))


def transformer_folder(folder: Path) -> Path:
    """The folder of the Transformer module (the model folder itself in current layouts)."""
    for module in read_modules(folder):
        if str(module.get("type", "")).endswith("Transformer"):
            sub = (folder / str(module.get("path") or "")).resolve()
            if not sub.is_relative_to(folder.resolve()):
                raise ExportError(f"The folder's {MODULES_FILE} points outside the folder.")
            return sub
    return folder


def pooling_plan(folder: Path) -> tuple[list[str], bool]:
    """(pooling modes, normalise) from modules.json; unsupported modules are one sentence."""
    modes: list[str] = []
    normalise = False
    for module in read_modules(folder):
        kind = str(module.get("type", "")).removeprefix(_ST)
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            modes = _modes(folder / str(module.get("path") or ""))
        elif kind == "Normalize":
            normalise = True
        else:
            raise ExportError(f"The sentence-transformers module '{kind}' in '{folder.name}' cannot "
                              "be put in the graph; export without pooling.")
    if not modes:
        raise ExportError(f"The folder '{folder.name}' lists no Pooling module in {MODULES_FILE}.")
    return modes, normalise


def _modes(pooling_dir: Path) -> list[str]:
    try:
        config = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"The pooling config in '{pooling_dir.name}' could not be read.",
                          str(exc)) from None
    on = [key.removeprefix("pooling_mode_") for key, value in config.items()
          if key.startswith("pooling_mode_") and value is True]
    unknown = [m for m in on if m not in MODES]
    if unknown:
        raise ExportError(f"The pooling mode '{unknown[0]}' cannot be put in the graph; export "
                          "without pooling.")
    return [m for m in MODES if m in on]


def pooled_module(wrapper: nn.Module, folder: Path) -> tuple[nn.Module, str]:
    """`wrapper` (a core.hf.model text model) followed by the folder's pooling and normalisation;
    its one output is `sentence_embedding`."""
    modes, normalise = pooling_plan(folder)
    if "last_hidden_state" not in wrapper.output_names:
        raise ExportError("The model gives no last_hidden_state, so there is nothing to pool.")
    pooled = _pooled_class()(wrapper, modes, normalise).eval()
    note = f"pooling inside the graph: {' + '.join(modes)}" + (", L2-normalised" if normalise
                                                                else "")
    return pooled, note


@functools.cache
def _pooled_class() -> type:
    import torch
    from torch import nn

    class Pooled(nn.Module):
        def __init__(self, inner: nn.Module, modes: list[str], normalise: bool) -> None:
            super().__init__()
            self.inner = inner
            self.modes = list(modes)
            self.normalise = normalise
            self.input_names = list(inner.input_names)
            self.output_names = ["sentence_embedding"]
            self.hidden_at = inner.output_names.index("last_hidden_state")

        def forward(self, input_ids: Any, attention_mask: Any = None,
                    token_type_ids: Any = None) -> tuple[Any]:
            tokens = self.inner(input_ids, attention_mask, token_type_ids)[self.hidden_at]
            mask = attention_mask if "attention_mask" in self.input_names else \
                torch.ones_like(input_ids)
            return (mean_pool_formula(tokens, mask, self.modes, self.normalise),)

    return Pooled


def mean_pool_formula(tokens: Any, mask: Any, modes: list[str] | tuple[str, ...] = ("mean_tokens",),
                      normalise: bool = False) -> Any:
    """sentence-transformers' pooling formulas (see the module docstring) on torch tensors."""
    import torch

    weights = mask.unsqueeze(-1).to(tokens.dtype)
    parts = []
    for mode in modes:
        if mode == "cls_token":
            parts.append(tokens[:, 0])
        elif mode == "max_tokens":
            parts.append(tokens.masked_fill(weights == 0, -1e9).max(dim=1).values)
        else:
            total = (tokens * weights).sum(dim=1)
            count = weights.sum(dim=1).clamp(min=1e-9)
            parts.append(total / (count if mode == "mean_tokens" else count.sqrt()))
    out = torch.cat(parts, dim=1)
    return torch.nn.functional.normalize(out, p=2, dim=1) if normalise else out

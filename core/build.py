"""Build a model from what the user gave: an architecture source plus a weights file.

One function for the CLI, the GUI and the runners, so they load models the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from core.arch import LoadReport


def parse_kwargs(text: str | None) -> dict[str, Any] | None:
    """The architecture's keyword arguments, given as a JSON object ('' or None: none)."""
    if not text or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError("The architecture's keyword arguments are not valid JSON; write them "
                          "like {\"channels\": 8}.", str(exc)) from None
    if not isinstance(value, dict):
        raise ExportError("The architecture's keyword arguments must be a JSON object, like "
                          "{\"channels\": 8}.")
    return value


def build_model(arch: str, weights: str | Path | None = None, *,
                kwargs: dict[str, Any] | None = None, trust: bool = False,
                section: str | None = None, search_path: str | Path | None = None,
                strict: bool = True) -> tuple[nn.Module, LoadReport | None]:
    """Build `arch` in eval mode and load `weights` into it; with `strict`, a bad fit raises."""
    from core.arch import load_architecture, load_weights
    from core.formats import open_checkpoint

    model = load_architecture(arch, kwargs, trust=trust, search_path=search_path)
    if weights is None:
        return model, None
    report = load_weights(model, open_checkpoint(weights), section=section)
    if strict and not report.ok:
        error = report.error()
        raise ExportError(f"{error.message} `ckpt-studio diff {weights} --model {arch}` lists every "
                          "key; export takes --non-strict to load only what fits.", error.details)
    return model, report

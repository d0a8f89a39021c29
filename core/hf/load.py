"""Strict loading of a folder's weights the way transformers' `from_pretrained` judges them.

torch's `load_state_dict` reports every key that differs; transformers forgives some by the model
class's own rules (modeling_utils `_adjust_missing_and_unexpected_keys`):
  - `_keys_to_ignore_on_load_unexpected` / `_keys_to_ignore_on_load_missing`: regexes per class
    (GPT-2's old `attn.bias` mask buffers, for instance);
  - `position_ids` and `rotary_emb.inv_freq`: buffers older checkpoints saved and current classes
    rebuild (non-persistent) - ignored when the model has such a buffer;
  - tied weights: the target is not stored, it *is* the source tensor (core.arch's report finds
    them by identity, so a tie transformers did not make is never assumed);
  - a checkpoint saved from a model with a task head, loaded into the base model: the head's keys
    (outside `base_model_prefix`) have no place in the base model.
Everything forgiven is named in the report's `ignored`, with the reason. Checkpoints whose saved
names differ from the installed class's (older layouts; transformers 5 also saves some classes, such
as ViT, in the older layout) are renamed by the class's own `WeightRenaming` rules (transformers'
conversion_mapping), when that makes more names fit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from core.arch import LoadReport


def load_folder_weights(model: nn.Module, weights: Path, folder_name: str) -> LoadReport:
    """Load the weights into `model` and apply transformers' rules; a bad fit is one sentence."""
    from core.arch import load_weights
    from core.formats import open_checkpoint

    report = load_weights(model, *with_renames(model, open_checkpoint(weights)))
    apply_rules(model, report)
    if not report.ok:
        error = report.error()
        raise ExportError(f"The weights in '{folder_name}' do not fit the model its config.json "
                          f"describes ({error.message.split('(', 1)[-1]} Check that config.json "
                          "belongs to these weights, or export with --non-strict.", error.details)
    return report


def apply_rules(model: nn.Module, report: LoadReport) -> LoadReport:
    """Move what the model class's rules forgive from `missing`/`unexpected` into `ignored`."""
    cls = type(model).__name__
    unexpected_rules = [(p, f"{cls} ignores it on load") for p in _patterns(
        model, "_keys_to_ignore_on_load_unexpected")]
    buffers = [name for name, _ in model.named_buffers()]
    for suffix, pattern in (("position_ids", r"(^|\.)position_ids$"),
                            ("rotary_emb.inv_freq", r"rotary_emb\.inv_freq")):
        if any(b.endswith(suffix) for b in buffers):
            unexpected_rules.append((pattern, "a buffer the model rebuilds itself (older "
                                              "checkpoints saved it)"))
    missing_rules = [(p, f"{cls} does not need it stored") for p in _patterns(
        model, "_keys_to_ignore_on_load_missing")]
    prefix = getattr(model, "base_model_prefix", "") or ""
    head_dropped = bool(prefix) and report.prefix_stripped == prefix + "."
    kept = []
    for key in report.unexpected:
        why = _first_match(key, unexpected_rules)
        if why is None and head_dropped and not key.startswith(prefix + "."):
            why = f"part of the saved model's task head, which the {cls} has no place for"
        _keep_or_ignore(report, key, why, kept)
    report.unexpected, kept = kept, []
    for key in report.missing:  # tied ones stay listed (with report.tied): the report's `ok` knows
        _keep_or_ignore(report, key, None if key in report.tied else
                        _first_match(key, missing_rules), kept)
    report.missing = kept
    return report


def with_renames(model: nn.Module, checkpoint: Any) -> tuple[Any, Any]:
    """(checkpoint, remap) for load_weights: transformers' renaming rules for this class when they
    make more of the checkpoint's names fit the model (a saved layout that differs from the
    class's: older checkpoints, and what transformers 5 itself saves for some classes)."""
    rename = _renamer(model)
    section = checkpoint.sections.get(checkpoint.weights) if checkpoint.weights else None
    if rename is None or section is None:
        return checkpoint, None
    expected = set(model.state_dict().keys())
    prefix = (getattr(model, "base_model_prefix", "") or "") + "."

    def fits(key: str) -> bool:
        return key in expected or prefix + key in expected or key.removeprefix(prefix) in expected

    names = list(section.tensors)
    renamed = {name: rename(name) for name in names}
    if sum(map(fits, renamed.values())) > sum(map(fits, names)):
        return checkpoint, renamed
    return checkpoint, None


def _renamer(model: nn.Module) -> Any:
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key

        renamings = [t for t in get_model_conversion_mapping(model) if type(t) is WeightRenaming]
    except Exception:  # an older or newer transformers without these helpers: names as saved
        return None
    if not renamings:
        return None
    return lambda key: rename_source_key(key, renamings, [])[0]


def _keep_or_ignore(report: LoadReport, key: str, why: str | None, kept: list[str]) -> None:
    if why is None:
        kept.append(key)
    else:
        report.ignored[key] = why


def _patterns(model: Any, attribute: str) -> list[str]:
    found = set(getattr(type(model), attribute, None) or [])
    found |= set(getattr(model, attribute, None) or [])
    for module in model.modules():
        found |= set(getattr(module, attribute, None) or [])
    return sorted(found)


def _first_match(key: str, rules: list[tuple[str, str]]) -> str | None:
    return next((why for pattern, why in rules if re.search(pattern, key)), None)

"""Find the weights inside nested training checkpoints and split a file's object tree into Sections.

A reader hands over the unpickled tree: dicts/lists/tuples/plain values with `TensorInfo` leaves and
`Opaque` stand-ins for objects we refused to build (a pickled nn.Module among them). Layout names
every tensor by its dotted path inside its section and decides parameter vs buffer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.dtypes import is_floating, is_quantized
from core.model import BUFFER, PARAMETER, UNKNOWN, Opaque, Section, TensorInfo

# key in a training checkpoint -> section name
SECTION_ALIASES: dict[str, str] = {
    **dict.fromkeys(["model", "state_dict", "model_state_dict", "model_state", "module", "net",
                     "network", "weights", "params", "generator"], "model"),
    **dict.fromkeys(["ema", "model_ema", "ema_model", "ema_state_dict", "state_dict_ema",
                     "model_ema_state_dict", "ema_state"], "ema"),
    **dict.fromkeys(["optimizer", "optimizer_state_dict", "optimizer_states", "optim",
                     "optimizer_state", "opt"], "optimizer"),
    **dict.fromkeys(["scheduler", "lr_scheduler", "lr_schedulers", "scheduler_state_dict"],
                    "scheduler"),
}
WEIGHT_SECTIONS = ("model", "ema")
BUFFER_NAMES = {
    "running_mean", "running_var", "num_batches_tracked", "position_ids", "inv_freq",
    "relative_position_index", "attn_mask", "causal_mask", "masked_bias", "token_type_ids",
    "anchors", "anchor_grid", "_float_tensor",
}
PREFIX_SEGMENTS = {"module", "model", "_orig_mod", "backbone", "net", "network", "encoder"}
MODULE_ATTRS = ("_parameters", "_buffers", "_modules")


def build_sections(tree: Any, default_name: str = "model") -> tuple[dict[str, Section], str | None]:
    """Split an object tree into Sections; returns (sections by name, the weights section name)."""
    sections: dict[str, Section] = {}
    if isinstance(tree, dict) and not _is_state_dict(tree):
        _split_training_checkpoint(tree, sections)
    else:
        weights, kept = _split_flat_training_state(tree) if isinstance(tree, dict) else (tree, {})
        sections[default_name] = _section(default_name, weights, "")
        for key, sub in kept.items():
            sections[SECTION_ALIASES[key]] = _section(SECTION_ALIASES[key], sub, key)
    sections = {name: sec for name, sec in sections.items() if sec.tensors or sec.values}
    for sec in sections.values():
        _finish(sec)
    return sections, _pick_weights(sections)


def _split_training_checkpoint(tree: dict[Any, Any], sections: dict[str, Section]) -> None:
    training: dict[str, Any] = {}
    for key, value in tree.items():
        key = str(key)
        if type(value) in _PLAIN:  # the common case of a huge dict of numbers: no walk
            training[key] = value
            continue
        if not contains_tensor(value):
            training[key] = to_plain(value)
            continue
        name = SECTION_ALIASES.get(key, key)
        if name in sections:  # e.g. both "model" and "state_dict" present
            name = key
        sections[name] = _section(name, value, key)
    if training:
        sections["training"] = Section("training", values=training)


def _split_flat_training_state(tree: dict[Any, Any]) -> tuple[dict[Any, Any], dict[str, dict[str, Any]]]:
    """A flat file written with `convert --keep-training`: the weights under their own names, an
    EMA copy or optimizer/scheduler state under their key ('optimizer_state_dict.state.0.exp_avg').
    Returns (the weights, {key: that key's entries}); only prefixes that look like such state split
    off (an EMA copy repeats the weights' names, optimizer state has a 'state' segment)."""
    groups: dict[str, dict[str, Any]] = {}
    for name in tree:
        head, _, rest = str(name).partition(".")
        if rest and SECTION_ALIASES.get(head) in ("ema", "optimizer", "scheduler"):
            groups.setdefault(head, {})[rest] = tree[name]
    weights = {k: v for k, v in tree.items() if str(k).partition(".")[0] not in groups}
    kept = {}
    for head, sub in groups.items():
        if SECTION_ALIASES[head] == "ema":
            looks_right = sum(n in weights for n in sub) * 2 >= len(sub)
        else:
            looks_right = all("state" in n.split(".") or "param_groups" in n for n in sub)
        if looks_right and weights:
            kept[head] = sub
        else:
            weights.update({f"{head}.{n}": v for n, v in sub.items()})
    return weights, kept


def _section(name: str, value: Any, source_path: str) -> Section:
    tensors, values = flatten(value)
    return Section(name, tensors=tensors, values=values, source_path=source_path)


def flatten(tree: Any) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """Dotted name -> TensorInfo for every tensor in the tree; top-level non-tensor values."""
    tensors: dict[str, TensorInfo] = {}
    stack: list[tuple[str, Any, str]] = [("", tree, UNKNOWN)]
    while stack:
        path, node, role = stack.pop()
        if isinstance(node, TensorInfo):
            keep = node.role if node.role != UNKNOWN else role
            tensors[path] = replace(node, name=path, role=keep)
            continue
        children = list(_children(node))  # only branches that may hold a tensor get a path
        stack.extend((_join(path, k), child, r or role) for k, child, r in reversed(children)
                     if type(child) not in _LEAVES)
    values = {}
    if isinstance(tree, dict):
        values = {str(k): to_plain(v) for k, v in tree.items() if not contains_tensor(v)}
    return tensors, values


_PLAIN = {int, float, str, bool, type(None)}  # to_plain keeps these as they are
_LEAVES = {*_PLAIN, bytes}


def _children(node: Any) -> list[tuple[str, Any, str | None]]:
    if isinstance(node, dict):
        return [(str(k), v, None) for k, v in node.items()]
    if isinstance(node, (list, tuple)):
        return [(str(i), v, None) for i, v in enumerate(node)]
    if isinstance(node, Opaque):
        return _opaque_children(node)
    return []


def _opaque_children(node: Opaque) -> list[tuple[str, Any, str | None]]:
    state = node.state[0] if isinstance(node.state, tuple) and node.state else node.state
    if isinstance(state, dict) and any(a in state for a in MODULE_ATTRS):
        roles = {"_parameters": PARAMETER, "_buffers": BUFFER, "_modules": None}
        out: list[tuple[str, Any, str | None]] = []
        for attr, role in roles.items():
            sub = state.get(attr) or {}
            if isinstance(sub, dict):
                out += [(str(k), v, role) for k, v in sub.items()]
        return out
    return [("", state, None), ("", node.args, None), ("", node.items, None)]


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


def contains_tensor(node: Any) -> bool:
    stack, seen = [node], 0
    while stack and seen < 1_000_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, TensorInfo):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, Opaque):
            stack.extend([item.state, item.args, item.items])
    return False


def to_plain(value: Any, depth: int = 0) -> Any:
    """JSON-friendly copy of a non-tensor value; unbuilt objects become '<qualname>' strings."""
    if depth > 50:
        return "…"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): to_plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Opaque):
        plain_args = all(isinstance(a, (str, int, float, bool)) for a in value.args)
        shown = ", ".join(repr(a) for a in value.args) if plain_args else "…"
        return f"<{value.qualname}({shown})>"
    return str(value)


def _is_state_dict(tree: dict[Any, Any]) -> bool:
    """A flat mapping whose values are mostly tensors (not a training checkpoint)."""
    if not tree:
        return True
    tensors = sum(isinstance(v, TensorInfo) for v in tree.values())
    if tensors == len(tree):
        return True  # every value a tensor, even if a key is called "model" or "weights"
    known_sections = sum(str(k) in SECTION_ALIASES for k in tree)
    return tensors > 0 and tensors >= len(tree) / 2 and known_sections == 0


def _finish(section: Section) -> None:
    weights_like = section.name in WEIGHT_SECTIONS or section.name not in SECTION_ALIASES.values()
    if weights_like and section.name != "training":
        section.tensors = {n: replace(t, role=guess_role(t)) for n, t in section.tensors.items()}
    section.common_prefix = common_prefix(list(section.tensors))


def guess_role(tensor: TensorInfo) -> str:
    if tensor.role != UNKNOWN:
        return tensor.role
    last = tensor.name.rpartition(".")[2]
    if last in BUFFER_NAMES or not (is_floating(tensor.dtype) or is_quantized(tensor.dtype)):
        return BUFFER
    return PARAMETER


def common_prefix(names: list[str]) -> str:
    """The leading 'module.'/'model.'-style segments every name shares (only well-known ones)."""
    if len(names) < 2:
        return ""
    prefix = ""
    while True:
        heads = {n[len(prefix):].partition(".")[0] for n in names}
        rests = all("." in n[len(prefix):] for n in names)
        if len(heads) != 1 or not rests or next(iter(heads)) not in PREFIX_SEGMENTS:
            return prefix
        prefix += next(iter(heads)) + "."


def _pick_weights(sections: dict[str, Section]) -> str | None:
    for name in WEIGHT_SECTIONS:
        if name in sections and sections[name].tensors:
            return name
    candidates = [s for s in sections.values() if s.tensors and s.name not in
                  ("optimizer", "scheduler", "training")]
    return max(candidates, key=lambda s: s.nbytes).name if candidates else None

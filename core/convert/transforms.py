"""What a conversion writes: pick a section, drop training state, filter, rename, cast.

`build_plan(checkpoint, options)` turns an opened file into a `Plan`: the tensors to write (each
once), the aliases (tied tensors written once), and the record of every change. Order of the
transforms: section pick -> keep/drop globs (on the names in the source) -> strip prefixes ->
add prefix -> regex renames -> collision check -> dtype cast.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from typing import Any

from core.dtypes import itemsize
from core.errors import CheckpointError
from core.model import Checkpoint, Section, TensorInfo
from core.report import human_bytes

DTYPES = {"fp16": "float16", "float16": "float16", "half": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp32": "float32", "float32": "float32", "float": "float32"}
CASTABLE = {"float64", "float32", "float16", "bfloat16"}  # float8/float4 keep their scaling as is
TRAINING_SECTIONS = {"optimizer", "scheduler", "training"}
# A view (e.g. `torch.zeros(1).expand(10**9)`) is written out in full, as safetensors cannot store
# views; refused when that makes the output both big and far bigger than the bytes it comes from.
EXPANSION_LIMIT = 1 << 30
EXPANSION_FACTOR = 16


@dataclass
class ConvertOptions:
    """The transforms a user can switch on (each one a GUI checkbox / CLI flag)."""

    section: str | None = None  # default: the detected weights section
    keep_training: bool = False  # False: drop optimizer/scheduler/other sections
    dtype: str | None = None  # fp16 | bf16 | fp32: cast floating tensors only
    strip_prefix: tuple[str, ...] = ()
    add_prefix: str = ""
    rename: tuple[str, ...] = ()  # "regex=>replacement"
    keep: tuple[str, ...] = ()  # globs on source names; empty = keep all
    drop: tuple[str, ...] = ()  # globs on source names
    hf_names: bool = False  # GGUF: llama.cpp tensor names back to Hugging Face names first

    def describe(self) -> list[str]:
        """The transforms applied, in words short enough for file metadata."""
        out = [f"section={self.section}" if self.section else "section=weights"]
        out += ["keep-training"] if self.keep_training else ["drop-training-state"]
        out += [f"dtype={DTYPES.get(self.dtype.lower(), self.dtype)}"] if self.dtype else []
        out += [f"strip-prefix={p}" for p in self.strip_prefix]
        out += [f"add-prefix={self.add_prefix}"] if self.add_prefix else []
        out += [f"rename={r}" for r in self.rename]
        out += [f"keep={g}" for g in self.keep] + [f"drop={g}" for g in self.drop]
        out += ["hf-names"] if self.hf_names else []
        return out


@dataclass(frozen=True)
class Item:
    """One tensor to write: its output name, where its bytes come from, its output dtype."""

    name: str
    source: TensorInfo
    dtype: str

    @property
    def cast(self) -> bool:
        return self.dtype != self.source.dtype

    @property
    def nbytes(self) -> int:
        return self.source.numel * itemsize(self.dtype)


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # alias output name -> written name
    dropped: list[str] = field(default_factory=list)  # tensor names removed by keep/drop rules
    dropped_sections: dict[str, int] = field(default_factory=dict)  # section -> tensors left out
    renamed: dict[str, str] = field(default_factory=dict)  # source name -> output name
    dtype_changes: dict[str, list[str]] = field(default_factory=dict)  # name -> [from, to]
    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # rules that changed nothing, said plainly

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.items)

    def names(self) -> list[str]:
        return [i.name for i in self.items] + list(self.aliases)


def build_plan(checkpoint: Checkpoint, options: ConvertOptions) -> Plan:
    """Apply the transforms to the file's tensor list; reads no tensor data."""
    plan = Plan()
    tensors = _selected(checkpoint, options, plan)
    kept = {}
    for name, info in tensors.items():
        if _filtered_out(name, options):
            plan.dropped.append(name)
        else:
            kept[name] = info
    start, plan.notes, sources = _hf_names(checkpoint, list(kept), options)
    renamed, notes = _rename_all(list(kept), options, start)
    plan.notes += notes
    plan.notes += [f"The drop rule '{g}' matched no tensor name; nothing was left out by it."
                   for g in options.drop if not any(fnmatch.fnmatchcase(n, g) for n in tensors)]
    plan.renamed = {old: new for old, new in renamed.items() if old != new}
    target = target_dtype(options.dtype)
    groups: dict[tuple[Any, ...], str] = {}
    for old, info in kept.items():
        new = renamed[old]
        key = view_key(info)
        if key is not None and key in groups:
            plan.aliases[new] = groups[key]
            continue
        if key is not None:
            groups[key] = new
        dtype = target if target and info.dtype in CASTABLE else info.dtype
        if dtype != info.dtype:
            plan.dtype_changes[new] = [info.dtype, dtype]
        plan.items.append(Item(new, replace(sources.get(old, info), name=old), dtype))
    if not plan.items:
        raise CheckpointError("Nothing is left to write: the keep/drop rules removed every tensor.")
    _refuse_expansion(plan)
    return plan


def _refuse_expansion(plan: Plan) -> None:
    """One sentence, before anything is written, when views would expand into a huge output."""
    stored: dict[tuple[str, str], int] = {}
    for item in plan.items:
        storage = item.source.storage
        assert storage is not None
        stored[(str(storage.path), storage.key)] = storage.nbytes
        if item.nbytes > EXPANSION_LIMIT and item.nbytes > EXPANSION_FACTOR * storage.nbytes:
            raise CheckpointError(
                f"The tensor '{item.source.name}' is a view of {human_bytes(storage.nbytes)} of data that "
                f"would be written out in full as {human_bytes(item.nbytes)}; converted files cannot "
                "keep views, so drop it with a drop rule.",
                f"shape {item.source.shape}, stride {item.source.stride}, storage {storage.nbytes} bytes")
    total, source = plan.nbytes, sum(stored.values())
    if total > EXPANSION_LIMIT and total > EXPANSION_FACTOR * source:
        biggest = max(plan.items, key=lambda i: i.nbytes)
        raise CheckpointError(
            f"The tensors to write are views of {human_bytes(source)} of data that would be written "
            f"out as {human_bytes(total)} (the largest is '{biggest.source.name}'); converted "
            "files cannot keep views, so drop them with drop rules.",
            f"{len(plan.items)} tensors, {len(stored)} storages")


def view_key(info: TensorInfo) -> tuple[Any, ...] | None:
    """Tensors with equal keys are the same bytes seen the same way (tied weights)."""
    if info.storage is None:
        return None
    stride = info.stride if info.stride is not None else info.contiguous_stride
    return (str(info.storage.path), info.storage.key, info.storage.offset, info.storage_offset,
            info.shape, stride, info.dtype)


def _selected(checkpoint: Checkpoint, options: ConvertOptions, plan: Plan) -> dict[str, TensorInfo]:
    sections = _pick_sections(checkpoint, options)
    plan.sections = [s.name for s in sections]
    plan.dropped_sections = {s.name: len(s.tensors) for s in checkpoint.sections.values()
                             if s.tensors and s.name not in plan.sections}
    out: dict[str, TensorInfo] = {}
    weights = options.section or checkpoint.weights
    for sec in sections:  # the weights keep their names; other sections go under their file key
        prefix = f"{sec.source_path or sec.name}." if options.keep_training and sec.name != weights else ""
        for name, info in sec.tensors.items():
            if info.storage is None:
                raise CheckpointError(f"The tensor '{name}' has no stored data (a meta tensor), "
                                      "so it cannot be converted; drop it with a drop rule.")
            out[prefix + name] = info
    return out


def _pick_sections(checkpoint: Checkpoint, options: ConvertOptions) -> list[Section]:
    with_tensors = [s for s in checkpoint.sections.values() if s.tensors]
    if not with_tensors:
        raise CheckpointError(f"'{checkpoint.path.name}' holds no tensors to convert.")
    if options.keep_training:
        return with_tensors
    name = options.section or checkpoint.weights
    section = checkpoint.sections.get(name) if name else None
    if section is None or not section.tensors:
        found = ", ".join(s.name for s in with_tensors)
        raise CheckpointError(f"This file has no section named '{name}' with tensors; "
                              f"it has: {found}.")
    return [section]


def _filtered_out(name: str, options: ConvertOptions) -> bool:
    if options.keep and not any(fnmatch.fnmatchcase(name, g) for g in options.keep):
        return True
    return any(fnmatch.fnmatchcase(name, g) for g in options.drop)


def _hf_names(checkpoint: Checkpoint, names: list[str], options: ConvertOptions
              ) -> tuple[dict[str, str], list[str], dict[str, TensorInfo]]:
    if not options.hf_names:
        return {}, [], {}
    from core.formats.gguf_names import hf_names

    return hf_names(checkpoint, names)


def _rename_all(names: list[str], options: ConvertOptions,
                start: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """{old name: new name}, and a note for each prefix or rule that changed no name; renaming
    begins from `start`'s name for a tensor where it has one."""
    rules = [_parse_rule(r) for r in options.rename]
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    used: set[str] = set()
    for old in names:
        new = start.get(old, old)
        for prefix in options.strip_prefix:
            if prefix and new.startswith(prefix):
                new = new[len(prefix):]
                used.add(prefix)
        new = options.add_prefix + new
        for (pattern, replacement), rule in zip(rules, options.rename, strict=True):
            before, new = new, _apply(pattern, replacement, new)
            used |= {rule} if new != before else set()
        if not new:
            raise CheckpointError(f"Renaming '{old}' leaves an empty name; change the rename rules.")
        if new in seen:
            raise CheckpointError(f"Renaming would give two tensors the same name '{new}' "
                                  f"(from '{seen[new]}' and '{old}'); change the rename rules.")
        seen[new] = old
        out[old] = new
    return out, _unused_notes(names, options, used)


def _unused_notes(names: list[str], options: ConvertOptions, used: set[str]) -> list[str]:
    example = f" (names start like '{names[0]}')" if names else ""
    notes = [f"The prefix '{p}' to strip starts no tensor name{example}; no name was changed "
             "by it." for p in dict.fromkeys(options.strip_prefix) if p and p not in used]
    return notes + [f"The rename rule '{r}' changed no tensor name." for r in options.rename
                    if r not in used]


def _parse_rule(rule: str) -> tuple[re.Pattern[str], str]:
    pattern, sep, replacement = rule.partition("=>")
    if not sep or not pattern:
        raise CheckpointError(f"The rename rule '{rule}' should look like 'pattern=>replacement', "
                              "e.g. '^backbone\\.=>encoder.'.")
    try:
        return re.compile(pattern), replacement
    except re.error as exc:
        raise CheckpointError(f"The rename rule '{rule}' is not a valid regular expression.",
                              str(exc)) from None


def _apply(pattern: re.Pattern[str], replacement: str, name: str) -> str:
    try:
        return pattern.sub(replacement, name)
    except (re.error, IndexError) as exc:
        raise CheckpointError(f"The replacement '{replacement}' refers to a group the pattern "
                              f"'{pattern.pattern}' does not have.", str(exc)) from None


def target_dtype(dtype: str | None) -> str | None:
    if not dtype:
        return None
    target = DTYPES.get(dtype.lower())
    if target is None:
        raise CheckpointError(f"Cannot cast to '{dtype}': choose fp16, bf16 or fp32. Integer and "
                              "bool tensors are never cast.")
    return target

"""Checkpoint vs checkpoint (or vs a model's expected keys): structure diff, value diff, remaps.

    result = diff_files("train.ckpt", "export.safetensors", values=True, suggest=True)
    result.totals           # {"same": 10, "only_a": 0, ...}
    result.to_dict()

The structure diff uses metadata only (no tensor reads). By default it compares each file's weights
section; `sections=[("model", "ema")]` picks others. `rules` renames A's keys before comparing.
The value diff (opt-in) streams each pair of tensors with the same shape (core.diff.values).
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.diff.remap import RemapRule, RemapSuggestion, apply_remap, suggest_remap
from core.diff.values import CLOSE, DIFFERENT, IDENTICAL, SKIPPED, Scratch, ValueDiff, compare_tensors
from core.errors import Cancelled, CheckpointError
from core.model import Checkpoint, Section, TensorInfo
from core.progress import Progress, step

SAME, ONLY_A, ONLY_B, SHAPE, DTYPE = "same", "only_a", "only_b", "shape_mismatch", "dtype_mismatch"
STATUSES = (ONLY_A, ONLY_B, SHAPE, DTYPE, SAME)
VALUE_STATUSES = (DIFFERENT, CLOSE, IDENTICAL, SKIPPED)
MODEL_FORMAT = "model"


@dataclass(slots=True)
class KeyDiff:
    name: str  # the name compared: B's name (A's name after the rules, if any)
    status: str
    shape_a: tuple[int, ...] | None = None
    dtype_a: str | None = None
    shape_b: tuple[int, ...] | None = None
    dtype_b: str | None = None
    name_a: str | None = None  # A's own name when a rule renamed it
    values: ValueDiff | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "name_a": self.name_a or (
                    self.name if self.shape_a is not None else None),
                "shape_a": _list(self.shape_a), "dtype_a": self.dtype_a,
                "shape_b": _list(self.shape_b), "dtype_b": self.dtype_b,
                "values": self.values.to_dict() if self.values else None}


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)


def _add_up(statuses: Sequence[str], counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-section counts summed per status (every status present, 0 when none)."""
    out = dict.fromkeys(statuses, 0)
    for found in counts:
        for status, n in found.items():
            out[status] += n
    return out


@dataclass
class SectionDiff:
    section_a: str
    section_b: str
    keys: list[KeyDiff]
    suggestions: list[RemapSuggestion] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(k.status for k in self.keys)
        return {s: found.get(s, 0) for s in STATUSES}

    def value_counts(self) -> dict[str, int]:
        found = Counter(k.values.status for k in self.keys if k.values is not None)
        return {s: found.get(s, 0) for s in VALUE_STATUSES}

    def with_status(self, status: str) -> list[KeyDiff]:
        return [k for k in self.keys if k.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {"section_a": self.section_a, "section_b": self.section_b, "counts": self.counts(),
                "value_counts": self.value_counts(), "keys": [k.to_dict() for k in self.keys],
                "suggestions": [s.to_dict() for s in self.suggestions]}


@dataclass
class DiffResult:
    path_a: str
    path_b: str
    format_a: str
    format_b: str
    sections: list[SectionDiff]
    values_compared: bool = False
    rules: list[RemapRule] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def against_model(self) -> bool:
        return self.format_b == MODEL_FORMAT

    @property
    def totals(self) -> dict[str, int]:
        return _add_up(STATUSES, (sec.counts() for sec in self.sections))

    @property
    def value_totals(self) -> dict[str, int]:
        return _add_up(VALUE_STATUSES, (sec.value_counts() for sec in self.sections))

    @property
    def suggestions(self) -> list[RemapSuggestion]:
        return [s for sec in self.sections for s in sec.suggestions]

    def __bool__(self) -> bool:
        """True when nothing differs: every key in both with the same shape/dtype, values close.
        Against a model: when load_state_dict(strict=True) would accept the checkpoint."""
        if self.against_model:
            return not any(self.load_state_dict_report().values())
        t, v = self.totals, self.value_totals
        return t[SAME] == sum(t.values()) and v[DIFFERENT] == 0

    def load_state_dict_report(self) -> dict[str, list[str]]:
        """What `model.load_state_dict(sd, strict=True)` would complain about (A = checkpoint)."""
        keys = [k for s in self.sections for k in s.keys]
        return {"missing_keys": [k.name for k in keys if k.status == ONLY_B],
                "unexpected_keys": [k.name_a or k.name for k in keys if k.status == ONLY_A],
                "size_mismatch": [k.name for k in keys if k.status == SHAPE]}

    def summary(self) -> str:
        return summary_text(self)

    def to_dict(self) -> dict[str, Any]:
        out = {"a": {"path": self.path_a, "format": self.format_a},
               "b": {"path": self.path_b, "format": self.format_b},
               "against_model": self.against_model, "equal": bool(self), "summary": self.summary(),
               "totals": self.totals, "values_compared": self.values_compared,
               "value_totals": self.value_totals if self.values_compared else None,
               "rules": [r.to_dict() for r in self.rules], "seconds": self.seconds,
               "sections": [s.to_dict() for s in self.sections]}
        if self.against_model:
            out["load_state_dict"] = self.load_state_dict_report()
        return out


def open_pair(path_a: str | os.PathLike[str],
              path_b: str | os.PathLike[str]) -> tuple[Checkpoint, Checkpoint]:
    """Open both files; an error says which of the two failed ("File A: ...")."""
    return open_labelled(path_a, "A"), open_labelled(path_b, "B")


def open_labelled(path: str | os.PathLike[str], label: str) -> Checkpoint:
    from core.formats import open_checkpoint

    try:
        return open_checkpoint(path)
    except CheckpointError as exc:
        exc.message = f"File {label} ('{Path(path).name}'): {exc.message}"
        exc.args = (exc.message,)
        raise


def diff_files(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str],
               **options: Any) -> DiffResult:
    """Open two files and diff them; options as `diff_checkpoints`."""
    a, b = open_pair(path_a, path_b)
    return diff_checkpoints(a, b, **options)


def diff_checkpoints(a: Checkpoint, b: Checkpoint, *, sections: Sequence[tuple[str, str]] | None = None,
                     section_a: str | None = None, section_b: str | None = None,
                     values: bool = False, atol: float | None = None, rtol: float | None = None,
                     rules: Sequence[RemapRule] = (), suggest: bool = False,
                     progress: Progress | None = None) -> DiffResult:
    """Diff two opened checkpoints section pair by section pair: `sections`, or else A's
    `section_a` with B's `section_b` (each defaulting to the file's `default_section`)."""
    start = time.perf_counter_ns()
    pairs = list(sections) if sections else [(section_a or default_section(a, "A"),
                                              section_b or default_section(b, "B"))]
    out = []
    tensor_pairs: list[tuple[KeyDiff, TensorInfo, TensorInfo]] = []
    with gc_paused():  # hundreds of thousands of small objects and no cycles: skip the GC passes
        for i, (name_a, name_b) in enumerate(pairs):
            step(progress, i, len(pairs), "comparing keys")
            ta, tb = section_tensors(a, name_a, "A"), section_tensors(b, name_b, "B")
            keys, both = diff_keys(ta, tb, rules)
            sec = SectionDiff(name_a, name_b, keys)
            if suggest:
                sec.suggestions = suggest_remap(_renamed(ta, rules), tb)
            tensor_pairs += both
            out.append(sec)
    if values:
        compare_values(tensor_pairs, atol, rtol, progress)
    result = DiffResult(str(a.path), str(b.path), a.format, b.format, out, values, list(rules))
    result.seconds = (time.perf_counter_ns() - start) / 1e9
    return result


@contextmanager
def gc_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off for a block that builds very many small objects
    and no reference cycles (a diff, a module tree): it would run many useless passes. Restores
    the previous state (a caller that had it off keeps it off). Shared with gui/models."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def diff_against_model(checkpoint: Checkpoint, expected: Mapping[str, TensorInfo], source: str, *,
                       section: str | None = None, rules: Sequence[RemapRule] = (),
                       suggest: bool = True) -> DiffResult:
    """The checkpoint (A) vs the keys a model expects (B): what load_state_dict(strict=True) says."""
    model = Checkpoint(Path(source), MODEL_FORMAT, {"model": Section("model", dict(expected))},
                       weights="model")
    name = section or default_section(checkpoint, "A")
    result = diff_checkpoints(checkpoint, model, sections=[(name, "model")], rules=rules,
                              suggest=suggest)
    for key in result.sections[0].keys:  # load_state_dict takes a [1] tensor into a 0-dim one
        if key.status == SHAPE and key.shape_a == (1,) and key.shape_b == ():
            key.status = SAME if key.dtype_a == key.dtype_b else DTYPE
    return result


def model_keys(source: str, kwargs: dict[str, Any] | None = None,
               search_path: str | os.PathLike[str] | None = None) -> dict[str, TensorInfo]:
    """The keys (shape, dtype) `load_state_dict` of the model built from `source` expects.

    `source` is 'package.module:callable' or 'file.py:callable' (see core.arch); the model is
    built on the meta device (no memory, no init) and, if that fails, normally."""
    from core.arch import expected_keys, load_architecture
    from core.errors import ExportError

    if source.endswith(".py"):
        raise CheckpointError(f"Name the function or class that builds the model in '{source}', "
                              f"e.g. '{source}:build'.")
    try:
        module = load_architecture(source, kwargs, meta=True, search_path=search_path)
    except ExportError:
        module = load_architecture(source, kwargs, meta=False, search_path=search_path)
    return {name: TensorInfo(name, shape, dtype) for name, (shape, dtype) in
            expected_keys(module).items()}


def default_section(checkpoint: Checkpoint, label: str) -> str:
    """The section compared when none is named: the file's weights, else (an optimizer-only file,
    say) its first section that holds tensors."""
    if checkpoint.weights is not None:
        return checkpoint.weights
    with_tensors = [name for name, section in checkpoint.sections.items() if section.tensors]
    if not with_tensors:
        raise CheckpointError(f"File {label} ('{checkpoint.path.name}') holds no tensors to compare.")
    return with_tensors[0]


def section_tensors(checkpoint: Checkpoint, name: str, label: str = "") -> dict[str, TensorInfo]:
    """A section's tensors, with the tied tensors a file we wrote records in its metadata."""
    section = checkpoint.sections.get(name)
    if section is None:
        known = ", ".join(s for s, sec in checkpoint.sections.items() if sec.tensors) or "none"
        who = f"File {label} ('{checkpoint.path.name}')" if label else f"'{checkpoint.path.name}'"
        raise CheckpointError(f"{who} has no section '{name}' (sections with tensors: {known}).")
    return section.tensors


def _renamed(tensors: dict[str, TensorInfo], rules: Sequence[RemapRule]) -> dict[str, TensorInfo]:
    if not rules:
        return tensors
    mapping = apply_remap(tensors, rules)
    return {mapping[n]: t for n, t in tensors.items()}


def diff_keys(ta: Mapping[str, TensorInfo], tb: Mapping[str, TensorInfo],
              rules: Sequence[RemapRule] = ()
              ) -> tuple[list[KeyDiff], list[tuple[KeyDiff, TensorInfo, TensorInfo]]]:
    """One KeyDiff per key (A's order, then B's keys A lacks); the pairs whose values can be compared."""
    mapping = apply_remap(ta, rules) if rules else None
    keys: list[KeyDiff] = []
    both: list[tuple[KeyDiff, TensorInfo, TensorInfo]] = []
    seen: set[str] = set()
    for old, x in ta.items():
        name = mapping[old] if mapping else old
        renamed = old if name != old else None
        y = tb.get(name)
        if y is None:
            keys.append(KeyDiff(name, ONLY_A, x.shape, x.dtype, name_a=renamed))
            continue
        seen.add(name)
        status = SHAPE if x.shape != y.shape else DTYPE if x.dtype != y.dtype else SAME
        key = KeyDiff(name, status, x.shape, x.dtype, y.shape, y.dtype, renamed)
        keys.append(key)
        if status != SHAPE:
            both.append((key, x, y))
    keys += [KeyDiff(n, ONLY_B, shape_b=y.shape, dtype_b=y.dtype) for n, y in tb.items()
             if n not in seen]
    return keys, both


def compare_values(pairs: list[tuple[KeyDiff, TensorInfo, TensorInfo]], atol: float | None,
                   rtol: float | None, progress: Progress | None = None) -> None:
    """Fill in `values` of each KeyDiff, streaming; progress counts elements, cancel raises."""
    total = sum(x.numel for _, x, _ in pairs)
    done = 0
    step(progress, 0, total, "comparing values")

    def tick(n: int) -> None:
        nonlocal done
        done += n
        step(progress, done, total, name)

    scratch = Scratch()  # one set of chunk buffers for every pair
    for key, x, y in pairs:
        name = key.name
        try:
            key.values = compare_tensors(x, y, atol, rtol, tick, scratch)
        except Cancelled:
            raise
        except CheckpointError as exc:  # one unreadable tensor does not stop the others
            key.values = ValueDiff(SKIPPED, note=exc.message)
    step(progress, total, total, "values compared")


def summary_text(result: DiffResult) -> str:
    """One or two plain sentences: what matches, what does not, what would fix it."""
    t = result.totals
    common = t[SAME] + t[SHAPE] + t[DTYPE]
    na, nb = common + t[ONLY_A], common + t[ONLY_B]
    explained = sum(s.explains for s in result.suggestions)
    hint = f" The remap suggestions explain {explained} key(s)." if explained else ""
    if result.against_model:
        report = result.load_state_dict_report()
        if not any(report.values()):
            return f"load_state_dict(strict=True) would accept this checkpoint ({na} keys)."
        return (f"load_state_dict(strict=True) would fail: {len(report['missing_keys'])} missing, "
                f"{len(report['unexpected_keys'])} unexpected, {len(report['size_mismatch'])} size "
                f"mismatch(es).{hint}")
    if common == 0 and (na or nb):
        tail = hint or " They look like different models."
        return f"No common keys: A has {na} tensors and B has {nb}, and no name appears in both.{tail}"
    text = (f"{t[SAME]} same, {t[SHAPE]} shape mismatch, {t[DTYPE]} dtype mismatch, "
            f"{t[ONLY_A]} only in A, {t[ONLY_B]} only in B.")
    if result.values_compared:
        v = result.value_totals
        text += (f" Values: {v[IDENTICAL]} identical, {v[CLOSE]} close, {v[DIFFERENT]} different"
                 + (f", {v[SKIPPED]} not compared." if v[SKIPPED] else "."))
    return text + hint

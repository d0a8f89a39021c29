"""Key remapping: suggest renames that make A's keys line up with B's, and apply them.

    suggestions = suggest_remap(a_tensors, b_tensors)   # name -> TensorInfo on both sides
    mapping = apply_remap(list(a_tensors), rules_of(suggestions))   # old name -> new name

Rules are applied in order, each to every name it matches (`RemapRule.apply`). Suggestions are
found greedily on what is still unmatched: a changed leading prefix (`module.`, `model.`,
`_orig_mod.`, `backbone.` or any shared leading segments), then a consistent rename of a run of
segments (`layers.{N}.attn` -> `blocks.{N}.attention`, `{N}` keeps the number), then the keys left
matched one to one by their (shape, dtype) signature, by position where a signature repeats.
Candidates are found on a sample of the keys and counted on all of them, so 200k keys stay fast.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.errors import CheckpointError
from core.model import Checkpoint, TensorInfo
from core.progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from core.convert import ConvertResult

STRIP, ADD, REPLACE, SEGMENTS, KEY = "strip_prefix", "add_prefix", "replace_prefix", "rename_segments", \
    "rename_key"
KINDS = (STRIP, ADD, REPLACE, SEGMENTS, KEY)
N = "{N}"  # in a segment template: any number, kept as it is
MAX_ROUNDS, SAMPLE, TOP = 6, 600, 6


@dataclass(frozen=True)
class RemapRule:
    """One rename. `old`/`new` are prefixes (strip/add/replace), segment templates or whole keys."""

    kind: str
    old: str = ""
    new: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CheckpointError(f"Unknown remap rule '{self.kind}'; use one of: {', '.join(KINDS)}.")
        if self.kind == SEGMENTS and self.old.count(N) != self.new.count(N):
            raise CheckpointError(f"The rule '{self.old}' -> '{self.new}' must keep every {N}.")

    def apply(self, name: str) -> str:
        if self.kind == ADD:
            return self.new + name
        if self.kind in (STRIP, REPLACE):
            return self.new + name[len(self.old):] if name.startswith(self.old) else name
        if self.kind == KEY:
            return self.new if name == self.old else name
        return _segment_regex(self.old).sub(_segment_replacement(self.new), name)

    def regex(self) -> str:
        """The rule as core.convert's `'pattern=>replacement'` rename."""
        new = self.new.replace("\\", "\\\\")
        if self.kind == ADD:
            return f"^=>{new}"
        if self.kind in (STRIP, REPLACE):
            return f"^{re.escape(self.old)}=>{new}"
        if self.kind == KEY:
            return f"^{re.escape(self.old)}$=>{new}"
        return f"{_segment_regex(self.old).pattern}=>{_segment_replacement(self.new)}"

    def describe(self) -> str:
        return {STRIP: f"remove the prefix '{self.old}'", ADD: f"add the prefix '{self.new}'",
                REPLACE: f"replace the prefix '{self.old}' with '{self.new}'",
                SEGMENTS: f"rename '{self.old}' to '{self.new}'",
                KEY: f"rename '{self.old}' to '{self.new}'"}[self.kind]

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "old": self.old, "new": self.new, "text": self.describe()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RemapRule:
        return cls(str(data["kind"]), str(data.get("old", "")), str(data.get("new", "")))


@dataclass
class RemapSuggestion:
    rules: list[RemapRule]
    explains: int  # keys of A it makes match a key of B
    ambiguous: bool  # another reading explains them as well, or it pairs keys by position
    description: str
    breaks: int = 0  # keys that matched before and would not after
    examples: list[tuple[str, str]] = field(default_factory=list)  # (A's name, B's name)

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules], "explains": self.explains,
                "ambiguous": self.ambiguous, "description": self.description,
                "breaks": self.breaks, "examples": [list(e) for e in self.examples]}


def _segment_regex(template: str) -> re.Pattern[str]:
    body = r"(\d+)".join(re.escape(part) for part in template.split(N))
    return _compiled(r"(?<![^.])" + body + r"(?![^.])")


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _CACHE:
        _CACHE[pattern] = re.compile(pattern)
    return _CACHE[pattern]


def _segment_replacement(template: str) -> str:
    parts = template.replace("\\", "\\\\").split(N)
    out = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        out += f"\\g<{i}>{part}"
    return out


def apply_remap(names: Iterable[str], rules: Sequence[RemapRule]) -> dict[str, str]:
    """Old name -> new name for every name, the rules applied in order; refuses renames that give
    two tensors one name."""
    stages = _stages(rules)
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for old in names:
        new = old
        for stage in stages:
            new = stage.get(new, new) if isinstance(stage, dict) else stage.apply(new)
        if new in seen:
            raise CheckpointError(f"The remap would give two tensors the same name '{new}' "
                                  f"(from '{seen[new]}' and '{old}').")
        seen[new] = old
        out[old] = new
    return out


def _stages(rules: Sequence[RemapRule]) -> list[RemapRule | dict[str, str]]:
    """Runs of whole-key renames become one lookup when none renames another's result."""
    stages: list[RemapRule | dict[str, str]] = []
    targets: set[str] = set()  # the new names of the last lookup stage
    for rule in rules:
        last = stages[-1] if stages else None
        if rule.kind != KEY:
            stages.append(rule)
        elif isinstance(last, dict) and rule.old not in targets and rule.old not in last:
            last[rule.old] = rule.new
            targets.add(rule.new)
        else:
            stages.append({rule.old: rule.new})
            targets = {rule.new}
    return stages


def rules_of(suggestions: Sequence[RemapSuggestion], ambiguous: bool = False) -> list[RemapRule]:
    """The rules of the suggestions to apply, in order (ambiguous ones only when asked)."""
    return [r for s in suggestions if ambiguous or not s.ambiguous for r in s.rules]


def suggest_remap(a: Mapping[str, TensorInfo], b: Mapping[str, TensorInfo]) -> list[RemapSuggestion]:
    """Renames of A's keys that make them match B's, best first; empty when nothing fits."""
    current = {name: name for name in a}  # A's name -> its name after the rules so far
    set_b = set(b)
    out: list[RemapSuggestion] = []
    for _ in range(MAX_ROUNDS):
        only_a = [cur for cur in current.values() if cur not in set_b]
        only_b = set_b.difference(current.values())
        if not only_a or not only_b:
            break
        found = _best_rule(only_a, only_b, list(current.values()), set_b)
        if found is None:
            break
        out.append(found)
        current = {old: found.rules[0].apply(cur) for old, cur in current.items()}
    out += _signature_suggestions(a, b, current)
    return out


def _best_rule(only_a: list[str], only_b: set[str], names: list[str],
               set_b: set[str]) -> RemapSuggestion | None:
    sample = _sample(only_a)
    scored = _scored(_prefix_candidates(only_a, only_b), sample, only_b)
    if not scored or scored[0][0] < len(sample):  # a prefix alone does not explain the sample
        scored = sorted(scored + _scored(_segment_candidates(only_a, only_b), sample, only_b),
                        key=_rank)
    for score, rule in scored[:3]:
        explains, examples = _explained(rule, only_a, only_b)
        if explains < min(2, len(only_a)):
            continue
        breaks = sum(1 for n in names if n in set_b and rule.apply(n) != n)
        if breaks >= explains:
            continue
        collide = len(set(map(rule.apply, names))) < len(names)
        tie = any(n == score and r != rule and _differs(r, rule, sample) for n, r in scored)
        return RemapSuggestion([rule], explains, collide or tie, rule.describe(), breaks, examples)
    return None


def _scored(rules: list[RemapRule], sample: Sequence[str],
            only_b: set[str]) -> list[tuple[int, RemapRule]]:
    """(keys of the sample each rule explains, rule), best first; rules explaining none dropped."""
    out = [(_explained(r, sample, only_b)[0], r) for r in dict.fromkeys(rules)]
    return sorted([(n, r) for n, r in out if n > 0], key=_rank)


def _rank(item: tuple[int, RemapRule]) -> tuple[int, bool, int]:
    n, rule = item
    return -n, rule.kind == SEGMENTS, len(rule.old) + len(rule.new)


def _explained(rule: RemapRule, only_a: Sequence[str], only_b: set[str]) -> tuple[int, list[tuple[str, str]]]:
    count, examples = 0, []
    for name in only_a:
        new = rule.apply(name)
        if new != name and new in only_b:
            count += 1
            if len(examples) < 3:
                examples.append((name, new))
    return count, examples


def _differs(r1: RemapRule, r2: RemapRule, names: list[str]) -> bool:
    return any(r1.apply(n) != r2.apply(n) for n in _sample(names, 200))


def _sample(items: Sequence[str], limit: int = SAMPLE) -> Sequence[str]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _prefixes(names: Iterable[str], depth: int = 3) -> list[str]:
    """The most common leading segment runs ('module.', 'model.backbone.') of the names, and ''."""
    counts: Counter[str] = Counter()
    for name in names:
        end = -1
        for _ in range(depth):
            end = name.find(".", end + 1)
            if end < 0:
                break
            counts[name[: end + 1]] += 1
    return [""] + [p for p, n in counts.most_common(TOP * depth) if n >= 2][: TOP * 2]


def _prefix_candidates(only_a: list[str], only_b: set[str]) -> list[RemapRule]:
    sample_a = _sample(only_a)
    heads_a, heads_b = _prefixes(sample_a), _prefixes(_sample(sorted(only_b)))
    votes: Counter[tuple[str, str]] = Counter()
    for pa in heads_a:
        for pb in heads_b:
            if pa == pb or (pa and pb and pa.rsplit(".", 2)[-2] == pb.rsplit(".", 2)[-2]):
                continue  # equal, or both end with the same segment: a shorter pair covers it
            votes[(pa, pb)] = sum(1 for n in sample_a if n.startswith(pa) and
                                  pb + n[len(pa):] in only_b)
    best = [pair for pair, n in votes.most_common(TOP) if n > 0]
    return [RemapRule(STRIP, pa) if not pb else RemapRule(ADD, "", pb) if not pa
            else RemapRule(REPLACE, pa, pb) for pa, pb in best]


def _shape_key(name: str) -> tuple[int, tuple[tuple[int, str], ...], str]:
    """Keys with one segment run renamed share it: segment count, numbers by position, last one."""
    parts = name.split(".")
    return len(parts), tuple((i, p) for i, p in enumerate(parts) if p.isdigit()), parts[-1]


def _segment_candidates(only_a: list[str], only_b: set[str]) -> list[RemapRule]:
    index: dict[tuple[Any, ...], list[str]] = {}
    for name in only_b:
        index.setdefault(_shape_key(name), []).append(name)
    votes: Counter[tuple[str, str]] = Counter()
    for name in _sample(only_a, SAMPLE // 2):
        parts = name.split(".")
        for other in index.get(_shape_key(name), [])[:32]:
            votes[_span(parts, other.split("."))] += 1
    return [RemapRule(SEGMENTS, old, new) for (old, new), n in votes.most_common(TOP)
            if n >= min(2, len(only_a))]


def _span(a: list[str], b: list[str]) -> tuple[str, str]:
    """The shortest run of segments that differs, numbers written as {N}."""
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    lo, hi = diff[0], diff[-1] + 1

    def template(parts: list[str]) -> str:
        return ".".join(N if p.isdigit() else p for p in parts[lo:hi])

    return template(a), template(b)


def _signature(t: TensorInfo) -> tuple[tuple[int, ...], str]:
    return tuple(t.shape), t.dtype


def _signature_suggestions(a: Mapping[str, TensorInfo], b: Mapping[str, TensorInfo],
                           current: dict[str, str]) -> list[RemapSuggestion]:
    """Pair the keys still unmatched by (shape, dtype): unique ones, then repeated ones by order."""
    targets = set(current.values())
    rest_a = [old for old, cur in current.items() if cur not in b]
    rest_b = [name for name in b if name not in targets]
    if not rest_a or not rest_b:
        return []
    groups_a: dict[Any, list[str]] = {}
    groups_b: dict[Any, list[str]] = {}
    for old in rest_a:
        groups_a.setdefault(_signature(a[old]), []).append(old)
    for name in rest_b:
        groups_b.setdefault(_signature(b[name]), []).append(name)
    unique: list[tuple[str, str]] = []
    positional: list[tuple[str, str]] = []
    for sig, olds in groups_a.items():
        news = groups_b.get(sig, [])
        if len(olds) == len(news):
            (unique if len(olds) == 1 else positional).extend(zip(olds, news, strict=True))
    matched = len(a) - len(rest_a) + len(unique) + len(positional)
    same_multiset = len(unique) + len(positional) == len(rest_a) == len(rest_b)
    if not same_multiset and matched < 0.5 * max(len(a), len(b)):
        return []  # a few chance matches between different models would only mislead
    out = []
    for pairs, ambiguous, how in ((unique, False, "unique"), (positional, True, "position among")):
        if pairs:
            rules = [RemapRule(KEY, current[old], new) for old, new in pairs]
            text = (f"match {len(pairs)} remaining key(s) by {how} tensors of the same shape "
                    "and dtype")
            out.append(RemapSuggestion(rules, len(pairs), ambiguous, text,
                                       examples=[(old, new) for old, new in pairs[:3]]))
    return out


def write_remapped(checkpoint: Checkpoint, rules: Sequence[RemapRule],
                   destination: str | os.PathLike[str], *, section: str | None = None,
                   overwrite: bool = False, progress: Progress | None = None) -> ConvertResult:
    """Write a section of the checkpoint (default: its weights), renamed by `rules`, as safetensors.

    Goes through the conversion engine (core.convert): streaming, temp file, verify, atomic replace;
    two names that would collide are refused before anything is written."""
    from core.convert import ConvertOptions, convert

    if not rules:
        raise CheckpointError("There is no remap to apply: no suggestion was found for these keys.")
    options = ConvertOptions(section=section, rename=tuple(r.regex() for r in rules))
    return convert(checkpoint, destination, "safetensors", options, overwrite=overwrite,
                   progress=progress)

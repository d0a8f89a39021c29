"""InspectResult: what a file holds, per section, with totals; the data behind `inspect` views."""

from __future__ import annotations

import fnmatch
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import CheckpointError
from core.model import BUFFER, Checkpoint, Finding, Section, TensorInfo


@dataclass
class Totals:
    tensors: int = 0
    parameters: int = 0  # elements of tensors that are not buffers
    buffers: int = 0
    nbytes: int = 0
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, tensors: list[TensorInfo]) -> Totals:
        """Counts over distinct tensors: tied weights (one storage, same view) count once."""
        distinct = list({_view_key(t): t for t in tensors}.values())
        by_dtype: Counter[str] = Counter()
        for t in distinct:
            by_dtype[t.dtype] += t.nbytes
        return cls(
            tensors=len(tensors),
            parameters=sum(t.numel for t in distinct if t.role != BUFFER),
            buffers=sum(t.numel for t in distinct if t.role == BUFFER),
            nbytes=sum(by_dtype.values()),
            bytes_by_dtype=dict(by_dtype.most_common()),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SectionView:
    name: str
    tensors: list[TensorInfo]
    values: dict[str, Any]
    totals: Totals
    common_prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "totals": self.totals.to_dict(), "values": self.values,
            "common_prefix": self.common_prefix,
            "tensors": [t.to_dict() for t in self.tensors],
        }


@dataclass
class InspectResult:
    path: str
    format: str
    file_size: int
    weights: str | None
    sections: list[SectionView]
    totals: Totals
    aliases: list[list[str]]  # groups of tensor names that share one storage
    metadata: dict[str, Any]
    findings: list[Finding]
    name_filter: str | None = None
    unfiltered_tensors: int = 0  # tensors in the chosen sections before the name filter
    preprocess: dict[str, Any] | None = None  # the recorded preprocessing spec (to_dict), if any

    def filter_note(self) -> str | None:
        """'3 of 12 tensors match 'bn'' when a filter was given; None otherwise."""
        if not self.name_filter:
            return None
        return (f"{self.totals.tensors} of {self.unfiltered_tensors} tensors match "
                f"'{self.name_filter}' (a substring, or a glob when it has * ? or [; any case).")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format, "file_size": self.file_size,
            "weights": self.weights, "totals": self.totals.to_dict(), "aliases": self.aliases,
            "filter": self.name_filter, "unfiltered_tensors": self.unfiltered_tensors,
            "metadata": self.metadata, "findings": [f.to_dict() for f in self.findings],
            "sections": [s.to_dict() for s in self.sections], "preprocess": self.preprocess,
        }


def inspect_checkpoint(
    checkpoint: Checkpoint, section: str | None = None, pattern: str | None = None
) -> InspectResult:
    """Summarise an opened checkpoint, optionally one section and names matching `pattern`
    (see `name_matcher`)."""
    if section is not None and section not in checkpoint.sections:
        known = ", ".join(checkpoint.sections) or "none"
        raise CheckpointError(f"This file has no section '{section}' (it has: {known}).")
    chosen = [checkpoint.sections[section]] if section else list(checkpoint.sections.values())
    matches = name_matcher(pattern or "")
    views = [_view(s, matches) for s in chosen]
    every = [t for v in views for t in v.tensors]
    return InspectResult(
        path=str(checkpoint.path), format=checkpoint.format,
        file_size=_size(checkpoint), weights=checkpoint.weights, sections=views,
        totals=Totals.of(every), aliases=alias_groups(every),
        metadata=checkpoint.metadata, findings=list(checkpoint.findings),
        name_filter=pattern or None, unfiltered_tensors=sum(len(s.tensors) for s in chosen),
        preprocess=_recorded_preprocess(checkpoint.metadata),
    )


def _recorded_preprocess(metadata: dict[str, Any]) -> dict[str, Any] | None:
    from core.inputs.preprocess import find_recorded

    spec = find_recorded(metadata)
    return spec.to_dict() if spec is not None else None


def name_matcher(text: str) -> Callable[[str], bool] | None:
    """The one rule for filtering tensor names (CLI and app); None when `text` is empty.

    Any case. Without * ? or [ it is a substring ('bn'). Otherwise a glob over the whole name, where
    a leading '*.' may also match at the start, so '*.bn.*' finds 'bn.weight' and 'layer1.bn.bias'.
    """
    text = text.strip()
    if not text:
        return None
    if not any(c in text for c in "*?["):
        needle = text.lower()
        return lambda name: needle in name.lower()
    glob = re.compile(fnmatch.translate(text), re.IGNORECASE | re.DOTALL).match
    if text.startswith("*."):
        return lambda name: bool(glob(name) or glob("." + name))
    return lambda name: bool(glob(name))


def _view(section: Section, matches: Callable[[str], bool] | None) -> SectionView:
    tensors = [t for name, t in section.tensors.items() if matches is None or matches(name)]
    return SectionView(section.name, tensors, section.values, Totals.of(tensors),
                       section.common_prefix)


def _view_key(t: TensorInfo) -> tuple[object, ...]:
    if t.storage is None:
        return ("no-storage", t.name)
    return (str(t.storage.path), t.storage.key, t.storage_offset, t.shape, t.stride, t.dtype)


def alias_groups(tensors: list[TensorInfo]) -> list[list[str]]:
    by_storage: dict[tuple[str, str], list[str]] = {}
    for t in tensors:
        if t.storage is not None:
            by_storage.setdefault((str(t.storage.path), t.storage.key), []).append(t.name)
    return [names for names in by_storage.values() if len(names) > 1]


def _size(checkpoint: Checkpoint) -> int:
    try:
        return os.path.getsize(checkpoint.path)
    except OSError:
        return 0

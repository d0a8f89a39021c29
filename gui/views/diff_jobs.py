"""The diff view's jobs, run on the worker: open both sides (two files, or a file and a model's
expected keys) and diff them, diffing other sections of the open files (--section-a/-b), the value
diff, and writing A renamed then diffing it again. Each strings
core functions together (core.diff.structure, core.diff.remap); gui.views.diff shows what they return.
Each also builds the module tree and the plotted changes of its diff (`Opened.shown`): at 100k keys that
takes a second, which the GUI thread would otherwise freeze for."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.convert import ConvertResult
from core.diff.remap import RemapRule, write_remapped
from core.diff.structure import (
    MODEL_FORMAT,
    DiffResult,
    diff_against_model,
    diff_checkpoints,
    open_labelled,
    open_pair,
)
from core.model import Checkpoint
from core.progress import Progress
from gui.models.diff_tree import DiffShown, shown_diff
from gui.views.diff_model import ModelSource, open_model


@dataclass
class Opened:
    """Both sides, their diff, and their sizes on disk (read on the worker). When B is a model, `b`
    holds its expected keys (format core.diff.MODEL_FORMAT, size 0). `shown`: the module tree and
    the plotted changes, built on the worker too (None: the view builds them)."""

    a: Checkpoint
    b: Checkpoint
    result: DiffResult
    size_a: int
    size_b: int
    shown: DiffShown | None = None


def open_and_diff(path_a: str, path_b: str | ModelSource, progress: Progress | None = None,
                  section_a: str | None = None) -> Opened:
    """The worker's job: open both files (headers only), or A and the model B, and diff their keys,
    with suggestions. `section_a`: A's section to compare (None: its weights)."""
    if isinstance(path_b, ModelSource):
        return diff_pair(open_labelled(path_a, "A"), open_model(path_b), progress, section_a)
    a, b = open_pair(path_a, path_b)
    return diff_pair(a, b, progress, section_a)


def diff_pair(a: Checkpoint, b: Checkpoint, progress: Progress | None = None,
              section_a: str | None = None, section_b: str | None = None,
              **options: object) -> Opened:
    """Diff A's section `section_a` with B's `section_b` (None: each file's weights, core's default;
    `sections=` in `options` overrides both)."""
    if b.format == MODEL_FORMAT:  # what load_state_dict(strict=True) would say (no values)
        result = diff_against_model(a, b.sections["model"].tensors, str(b.path), section=section_a)
    else:
        if "sections" not in options:
            options.update(section_a=section_a, section_b=section_b)
        result = diff_checkpoints(a, b, suggest=True, progress=progress, **options)  # type: ignore[arg-type]
    return Opened(a, b, result, _size(a.path), _size(b.path), shown_diff(result))


def rediff_sections(opened: Opened, section_a: str | None, section_b: str | None,
                    progress: Progress | None = None) -> Opened:
    """`diff A B --section-a NAME --section-b NAME` on the files already open: the structure diff
    (and suggestions) of the chosen sections; no tensor is read."""
    return diff_pair(opened.a, opened.b, progress, section_a, section_b)


def values_diff(opened: Opened, progress: Progress | None = None) -> Opened:
    """The same sections again, with the value diff (reads both files)."""
    pairs = [(s.section_a, s.section_b) for s in opened.result.sections]
    return diff_pair(opened.a, opened.b, progress, sections=pairs, values=True)


def apply_and_rediff(opened: Opened, rules: Sequence[RemapRule], destination: str,
                     progress: Progress | None = None) -> tuple[ConvertResult, Opened]:
    """Write A's compared section renamed by `rules` (verified, atomic) and diff the written file
    (its only section) against the same section of B."""
    compared = opened.result.sections[0]
    written = write_remapped(opened.a, rules, destination, section=compared.section_a,
                             overwrite=True, progress=progress)
    a = open_labelled(written.outputs[-1]["path"], "A")
    return written, diff_pair(a, opened.b, progress, section_b=compared.section_b)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0

"""Locate: where along the model do two runners start to differ?

    loc = locate(reference, candidate, "x: float32[batch(1..64), 16]", point={"batch": 1})
    loc.first_divergence     # the first module (in execution order) whose output is out of tolerance
    loc.rows                 # every module both sides show, in execution order, with its error

Both runners run once on one input case; every module's output is recorded on each side (see
core.checks.locate_capture and core.checks.locate_onnx) and compared with the parity check's
comparison (core.checks.compare: the same atol/rtol, by dtype unless given). Modules are matched by
their dotted names; when the two sides name them with a different leading prefix (a wrapper module),
the prefix is dropped and the mapping marked approximate. Progress: three steps; a cancel raises
Cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.checks.common import carry_dtypes, make_inputs, match_names, rename, resolve_specs
from core.checks.compare import compare_output
from core.checks.locate_capture import Capture, ModuleValue, capture
from core.checks.verdicts import target_profile
from core.errors import CheckFailed
from core.inputs import InputSpec, shapes_to_test
from core.progress import Progress, step
from core.runtime.base import Runner


@dataclass
class LocateRow:
    """One module's output compared; depth is its place in execution order (1 = first)."""

    depth: int
    module: str
    module_type: str  # what the reference ran there (class name or op)
    op: str  # what the candidate ran there (its op, e.g. Gemm, aten.linear)
    shape: list[int]
    max_abs: float | None
    max_rel: float | None
    cosine: float | None
    outside_percent: float
    exceeds: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Localisation:
    rows: list[LocateRow]
    approximate_mapping: bool
    reference: str
    candidate: str
    input_shapes: dict[str, list[int]]
    atol: float | None = None
    rtol: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergence(self) -> LocateRow | None:
        return next((row for row in self.rows if row.exceeds), None)

    def depth_series(self) -> tuple[list[int], list[float]]:
        """(depth, max abs difference) per compared module, for a plot of the error along depth."""
        points = [(r.depth, r.max_abs) for r in self.rows if r.max_abs is not None]
        return [d for d, _ in points], [float(v) for _, v in points]

    def summary(self) -> str:
        first = self.first_divergence
        if not self.rows:
            return "No module could be compared."
        if first is None:
            return f"All {len(self.rows)} compared modules agree within tolerance."
        return (f"The first module out of tolerance is '{first.module}' ({first.module_type}, "
                f"op {first.op}) at depth {first.depth} of {len(self.rows)}: max abs difference "
                f"{first.max_abs:.4g}, max rel {first.max_rel:.4g}.")

    def to_json(self) -> dict[str, Any]:
        first = self.first_divergence
        return {"first_divergence": first.to_dict() if first else None,
                "approximate_mapping": self.approximate_mapping, "summary": self.summary(),
                "reference": self.reference, "candidate": self.candidate,
                "input_shapes": self.input_shapes, "atol": self.atol, "rtol": self.rtol,
                "notes": self.notes, "rows": [r.to_dict() for r in self.rows]}


def locate(reference: Runner, candidate: Runner, spec: str | Sequence[InputSpec] | None = None, *,
           inputs: dict[str, np.ndarray] | None = None, point: dict[str, int] | None = None,
           atol: float | None = None, rtol: float | None = None, seed: int = 0,
           progress: Progress | None = None) -> Localisation:
    """Compare every module's output of `candidate` with `reference` on one input case: `inputs`
    when given, else seeded inputs from `spec` at `point` (default: the first shape to test).
    Tolerances default as in the parity check (by dtype; the int8 profile's for a quantized model)."""
    notes: list[str] = []
    if atol is None and rtol is None:
        profile = target_profile(reference, candidate)
        atol, rtol = profile.atol, profile.rtol
    specs = resolve_specs(spec, [reference, candidate]) if inputs is None or spec else []
    if inputs is None:
        inputs = make_inputs(specs, point or shapes_to_test(specs)[0], seed)
    captures = []
    for i, runner in enumerate((reference, candidate)):
        step(progress, i, 3, f"recording the modules of {runner.name}")
        mapping = match_names(list(inputs), runner, notes)
        carry_dtypes(specs, runner, mapping)
        captures.append(capture(runner, rename(inputs, mapping)))
    step(progress, 2, 3, "comparing module outputs")
    rows, approximate = compare_captures(captures[0], captures[1], atol, rtol, notes)
    step(progress, 3, 3, "compared")
    if not rows:
        raise CheckFailed(f"No module of {reference.name} could be matched with one of "
                          f"{candidate.name}, so the divergence cannot be located.")
    return Localisation(rows, approximate, reference.name, candidate.name,
                        {k: list(v.shape) for k, v in inputs.items()}, atol, rtol,
                        list(dict.fromkeys(notes + captures[0].notes + captures[1].notes)))


def compare_captures(ref: Capture, got: Capture, atol: float | None, rtol: float | None,
                     notes: list[str]) -> tuple[list[LocateRow], bool]:
    """Rows in the reference's execution order, for the modules both sides recorded."""
    pairs, renamed = align(ref.values, got.values)
    if renamed:
        notes.append("The two models name their modules with a different prefix; they were "
                     "matched without it.")
    rows: list[LocateRow] = []
    skipped = 0
    for ref_value, got_value in pairs:
        a, b = ref_value.value, got_value.value
        if a.shape != b.shape:
            if a.size != b.size:
                skipped += 1
                continue
            b = b.reshape(a.shape)
        row = compare_output(ref_value.module, a, b, ref_dtype=ref_value.dtype,
                             got_dtype=got_value.dtype, atol=atol, rtol=rtol)
        rows.append(LocateRow(len(rows) + 1, ref_value.module, ref_value.op, got_value.op,
                              list(a.shape), row.max_abs_diff, row.max_rel_diff,
                              row.cosine_similarity, row.outside_percent, not row.passed))
    if skipped:
        what = "1 module's output differs" if skipped == 1 else f"{skipped} modules' outputs differ"
        notes.append(f"{what} in size between the two sides, so not compared.")
    return rows, ref.approximate or got.approximate or renamed


def align(ref: list[ModuleValue], got: list[ModuleValue]
          ) -> tuple[list[tuple[ModuleValue, ModuleValue]], bool]:
    """Pairs by module name; when a leading prefix on one side ('model.') improves the overlap,
    names are matched without it (the bool says so)."""
    best = _pairs(ref, got, "", "")
    renamed = False
    for ref_prefix, got_prefix in _prefix_options(ref, got):
        pairs = _pairs(ref, got, ref_prefix, got_prefix)
        if len(pairs) > len(best):
            best, renamed = pairs, True
    return best, renamed


def _pairs(ref: list[ModuleValue], got: list[ModuleValue], ref_prefix: str,
           got_prefix: str) -> list[tuple[ModuleValue, ModuleValue]]:
    by_name = {v.module.removeprefix(got_prefix): v for v in got
               if v.module.startswith(got_prefix)}
    return [(v, by_name[v.module.removeprefix(ref_prefix)]) for v in ref
            if v.module.startswith(ref_prefix) and v.module.removeprefix(ref_prefix) in by_name]


def _prefix_options(ref: list[ModuleValue], got: list[ModuleValue]) -> list[tuple[str, str]]:
    def heads(values: list[ModuleValue]) -> set[str]:
        return {v.module.split(".")[0] + "." for v in values if "." in v.module}

    return [(p, "") for p in heads(ref)] + [("", p) for p in heads(got)]

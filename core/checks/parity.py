"""Parity: do two runners (reference first) give the same outputs over several input shapes?

    result = check_parity(reference, candidate, "x: float32[batch(1..64), 3, 8, 8]",
                          save_dir="failures")
    if not result: print(result.failures())

By default the shapes are core.inputs.shapes_to_test(specs) (batch 1, 16, 64 plus the min/max of
every dynamic dim) with seeded random inputs; `cases` (e.g. from load_cases(.npz files)) replaces
them. Per output and shape: see core.checks.compare. A runner that fails on one shape fails that
shape with its error; the other shapes still run. Inputs and outputs of every failing shape are saved
to `save_dir` as .npz ('input.NAME', 'reference.NAME', 'candidate.NAME'; load_cases reads them back).
Progress: two steps per shape; a cancel raises Cancelled and leaves no file behind.

Beside the raw tolerances, `result.verdicts` holds task-level verdicts (top-1/top-5 agreement of
classifier-like outputs, the cosine distribution of embeddings) and `settings["profile"]` the
tolerance profile (core.checks.verdicts): a quantized (int8) model gets loose tolerances and must
also pass its verdicts; `result.reason()` says why it passed or failed. `result.localisation`
holds core.checks.locate's answer when the caller located the divergence (the CLI's --locate).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.common import (
    carry_dtypes,
    make_inputs,
    match_names,
    rename,
    resolve_specs,
    save_npz,
)
from core.checks.compare import OutputComparison, compare_output
from core.checks.verdicts import TaskTally, profile_dict, target_profile
from core.errors import CheckFailed
from core.inputs import InputSpec, format_specs, shapes_to_test
from core.progress import Progress, step
from core.runtime.base import Runner

Tolerances = dict[str, tuple[float, float]]


@dataclass
class CaseResult:
    """One input shape: every output compared, or the error that stopped it."""

    label: str
    sizes: dict[str, int]
    input_shapes: dict[str, list[int]]
    outputs: list[OutputComparison] = field(default_factory=list)
    error: str | None = None
    error_details: str | None = None
    saved: str | None = None  # the .npz with this case's inputs and outputs, when it failed

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "sizes": self.sizes, "input_shapes": self.input_shapes,
                "passed": self.passed, "error": self.error, "error_details": self.error_details,
                "saved": self.saved, "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class ParityResult:
    """`bool(result)` is True when every shape passed."""

    reference: dict[str, Any]
    candidate: dict[str, Any]
    cases: list[CaseResult]
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # task level, core.checks.verdicts
    localisation: dict[str, Any] | None = None  # Localisation.to_json() when located

    @property
    def passed(self) -> bool:
        return (bool(self.cases) and all(c.passed for c in self.cases)
                and all(v["passed"] for v in self.verdicts if v["decides"]))

    def reason(self) -> str:
        """Why it passed or failed, in one sentence: the profile, then the deciding evidence."""
        profile = self.settings.get("profile", {}).get("name", "float")
        raw = "every value is within tolerance" if all(c.passed for c in self.cases) else \
            f"{sum(not c.passed for c in self.cases)} of {len(self.cases)} input shapes fail"
        deciding = [v for v in self.verdicts if v["decides"]]
        task = "; ".join(f"{v['output']}: {v['reason']}" for v in deciding or self.verdicts)
        if task and not deciding:
            task = "for information, " + task
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict} under the {profile} profile: {raw}" + (f"; {task}." if task else ".")

    def __bool__(self) -> bool:
        return self.passed

    def failures(self) -> list[str]:
        """One sentence per failing shape or output."""
        lines = []
        for case in self.cases:
            if case.error:
                lines.append(f"{case.label}: {case.error}")
            lines += [f"{case.label}: {o.message}" for o in case.outputs if o.message]
        return lines

    def worst(self) -> dict[str, float | None]:
        """Largest max abs difference of each output over all shapes."""
        out: dict[str, float | None] = {}
        for case in self.cases:
            for o in case.outputs:
                if o.max_abs_diff is not None:
                    out[o.name] = max(out.get(o.name) or 0.0, o.max_abs_diff)
                else:
                    out.setdefault(o.name, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "parity", "passed": self.passed, "reference": self.reference,
                "candidate": self.candidate, "settings": self.settings, "notes": self.notes,
                "failures": self.failures(), "worst_max_abs_diff": self.worst(),
                "reason": self.reason(), "verdicts": self.verdicts,
                "first_divergence": (self.localisation or {}).get("first_divergence"),
                "locate": self.localisation, "cases": [c.to_dict() for c in self.cases]}


def check_parity(reference: Runner, candidate: Runner,
                 spec: str | Sequence[InputSpec] | None = None, *,
                 points: Sequence[dict[str, int]] | None = None,
                 cases: Sequence[dict[str, np.ndarray]] | None = None,
                 atol: float | None = None, rtol: float | None = None,
                 tolerances: Tolerances | None = None, seed: int = 0,
                 save_dir: str | Path | None = None,
                 progress: Progress | None = None) -> ParityResult:
    """Compare `candidate` with `reference` (see the module docstring). `atol`/`rtol` override the
    dtype defaults for every output; `tolerances` sets (atol, rtol) per output name."""
    notes: list[str] = []
    plan, specs = _plan(reference, candidate, spec, points, cases, seed)
    given = list(plan[0][2]) if cases else [s.name for s in specs]
    maps = [match_names(given, r, notes) for r in (reference, candidate)]
    for runner, mapping in zip((reference, candidate), maps, strict=True):
        carry_dtypes(specs, runner, mapping)
    profile = target_profile(reference, candidate)
    if atol is None and rtol is None and profile.atol is not None:
        atol, rtol = profile.atol, profile.rtol
        notes.append(f"The {profile.name} tolerance profile applies (the model is quantized).")
    tally = TaskTally()
    tol = {"atol": atol, "rtol": rtol, "per_output": dict(tolerances or {}), "tally": tally}
    total, results, arrays_of = 2 * len(plan), [], {}
    step(progress, 0, total, "parity")
    for i, (label, sizes, inputs) in enumerate(plan):
        case, arrays = _run_case(reference, candidate, inputs, maps, label, sizes, tol, notes,
                                 lambda done, text, i=i: step(progress, 2 * i + done, total, text))
        results.append(case)
        if not case.passed:
            arrays_of[i] = arrays
    if save_dir is not None:
        notes += _save_failures(results, arrays_of, Path(save_dir), reference, candidate)
    notes += _unused_tolerances(tol["per_output"], results)
    settings = {"atol": atol, "rtol": rtol, "tolerances": tol["per_output"], "seed": seed,
                "inputs": format_specs(specs) if specs else "from .npz files",
                "save_dir": str(save_dir) if save_dir is not None else None,
                "profile": profile_dict(profile)}
    return ParityResult(reference.info(), candidate.info(), results, list(dict.fromkeys(notes)),
                        settings, tally.verdicts(profile))


Plan = list[tuple[str, dict[str, int], dict[str, np.ndarray]]]


def _plan(reference: Runner, candidate: Runner, spec: str | Sequence[InputSpec] | None,
          points: Sequence[dict[str, int]] | None, cases: Sequence[dict[str, np.ndarray]] | None,
          seed: int) -> tuple[Plan, list[InputSpec]]:
    """(label, sizes, inputs) per shape to test; every input is made (and checked) up front."""
    if cases is not None:
        if not cases:
            raise CheckFailed("No input cases were given.")
        return [(_shapes_label(c), {}, dict(c)) for c in cases], []
    specs = resolve_specs(spec, [reference, candidate])
    plan: Plan = []
    for point in (list(points) if points else shapes_to_test(specs)):
        inputs = make_inputs(specs, point, seed)
        plan.append((_shapes_label(inputs), dict(point), inputs))
    return plan, specs


def _shapes_label(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())


def _run_case(reference: Runner, candidate: Runner, inputs: dict[str, np.ndarray],
              maps: list[dict[str, str]], label: str, sizes: dict[str, int],
              tol: dict[str, Any], notes: list[str],
              tick: Callable[[int, str], None]) -> tuple[CaseResult, dict[str, np.ndarray]]:
    case = CaseResult(label, sizes, {k: list(v.shape) for k, v in inputs.items()})
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    outs = []
    for which, (runner, mapping) in enumerate(zip((reference, candidate), maps, strict=True)):
        if case.error is None:
            try:
                out = runner.run(rename(inputs, mapping))
                outs.append(out)
                tag = ("reference", "candidate")[which]
                arrays |= {f"{tag}.{k}": v for k, v in out.items()}
            except CheckFailed as exc:
                case.error, case.error_details = exc.message, exc.details
        tick(which + 1, f"{label}: {runner.name}")
    if case.error is None:
        _compare_all(case, outs[0], outs[1], reference, candidate, tol, notes)
    return case, arrays


def _compare_all(case: CaseResult, ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
                 reference: Runner, candidate: Runner, tol: dict[str, Any],
                 notes: list[str]) -> None:
    pairs = _pair_outputs(list(ref), list(got), notes)
    if pairs is None:
        case.error = (f"The reference gives {len(ref)} outputs ({', '.join(ref)}) but the "
                      f"candidate gives {len(got)} ({', '.join(got)}).")
        return
    for name, other in pairs:
        atol, rtol = tol["per_output"].get(name, (tol["atol"], tol["rtol"]))
        case.outputs.append(compare_output(
            name, ref[name], got[other], candidate_name=other, atol=atol, rtol=rtol,
            ref_dtype=reference.output_dtypes.get(name), got_dtype=candidate.output_dtypes.get(other)))
        tol["tally"].add(name, ref[name], got[other])


def parse_tolerances(texts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Per-output tolerances, each written 'NAME=ATOL,RTOL' (the CLI's --tol, the GUI's field)."""
    out = {}
    for text in texts:
        name, _, values = text.partition("=")
        try:
            atol, rtol = (float(v) for v in values.split(","))
        except ValueError:
            raise CheckFailed(f"'{text}' is not a tolerance; write it like 'logits=1e-3,1e-3'.") \
                from None
        out[name] = (atol, rtol)
    return out


def _unused_tolerances(per_output: Tolerances, cases: list[CaseResult]) -> list[str]:
    """A tolerance for an output that no case gave (a misspelt name) would never apply: say so."""
    names = list(dict.fromkeys(o.name for case in cases for o in case.outputs))
    unused = [n for n in per_output if n not in names]
    if not names or not unused:
        return []
    return [f"No output is named {', '.join(map(repr, unused))}, so that tolerance was not used "
            f"(the outputs are {', '.join(names)})."]


def _pair_outputs(ref: list[str], got: list[str], notes: list[str]) -> list[tuple[str, str]] | None:
    """Outputs by name when both runners name them alike, else by position (noted)."""
    if set(ref) == set(got):
        return [(n, n) for n in ref]
    if len(ref) != len(got):
        return None
    notes.append(f"The outputs are named differently ({', '.join(ref)} vs {', '.join(got)}); they "
                 "were matched by position.")
    return list(zip(ref, got, strict=True))


def _save_failures(results: list[CaseResult], arrays_of: dict[int, dict[str, np.ndarray]],
                   folder: Path, reference: Runner, candidate: Runner) -> list[str]:
    """Save each failing case's arrays; a save that fails becomes a note (the comparison itself
    is still the answer), and the rest are not tried."""
    for i, arrays in arrays_of.items():
        case = results[i]
        meta = {"label": case.label, "reference": reference.info(), "candidate": candidate.info(),
                "error": case.error, "failures": [o.message for o in case.outputs if o.message]}
        slug = re.sub(r"[^A-Za-z0-9]+", "_", case.label).strip("_")[:60] or "case"
        path = folder / f"parity_case{i}_{slug}.npz"
        try:
            save_npz(path, arrays | {"meta": np.array(json.dumps(meta, default=str))})
        except OSError as exc:
            return [f"The failing cases could not be saved in '{folder}' ({exc.strerror or exc})."]
        case.saved = str(path)
    return []


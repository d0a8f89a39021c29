"""Parity with an artefact that has its preprocessing baked in: the artefact takes raw pixels, the
model it came from takes normalised input. `for_baked_candidate` wraps the reference so that it takes
the same raw pixels and applies the recorded preprocessing (core.export.preprocess.normalise, the
baked ops) before running; `check_parity` then feeds raw pixels (0..255) to both and compares.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.common import specs_from_runner
from core.errors import CheckpointError
from core.inputs import InputSpec
from core.inputs.preprocess import Preprocess, find_recorded
from core.runtime.base import Runner


class NormalisingRunner(Runner):
    """A runner for normalised input (eager, a plain artefact) that takes raw pixels instead."""

    backend = "preprocess"

    def __init__(self, inner: Runner, spec: Preprocess, raw_name: str,
                 specs: list[InputSpec] | None = None) -> None:
        super().__init__(f"{inner.name} (fed the recorded preprocessing of raw pixels)", [raw_name],
                         inner.output_names, inner.device, inner.load_seconds, inner.threads,
                         inner.source)
        self.inner = inner
        self.spec = spec
        if specs:
            self.input_specs = specs  # core.checks.common.resolve_specs makes inputs from these

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        import torch

        from core.export.preprocess import normalise

        raw = torch.from_numpy(np.ascontiguousarray(feed[self.input_names[0]]))
        x = normalise(raw, self.spec).numpy()
        out = self.inner.run({self.inner.input_names[0]: x})
        self.output_names = list(out)
        return out


def recorded_spec(source: str | Path) -> Preprocess | None:
    """The preprocessing recorded in a file, None for anything else (architectures, other files)."""
    from core.formats import open_checkpoint

    if not Path(source).is_file():
        return None
    try:
        return find_recorded(open_checkpoint(source).metadata)
    except CheckpointError:
        return None


def for_baked_candidate(reference: Runner, candidate: Runner, reference_source: str | Path,
                        candidate_source: str | Path) -> Runner:
    """`reference`, wrapped in a NormalisingRunner when the candidate has image preprocessing baked
    in and the reference does not; otherwise `reference` as it is."""
    spec = recorded_spec(candidate_source)
    if spec is None or not spec.baked or spec.kind != "image" or len(candidate.input_names) != 1:
        return reference
    theirs = recorded_spec(reference_source)
    if theirs is not None and theirs.baked:
        return reference  # both take raw pixels
    specs = [replace(s, values=(0.0, 255.0)) for s in specs_from_runner(candidate)]
    return NormalisingRunner(reference, spec, candidate.input_names[0], specs or None)

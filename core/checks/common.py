"""What the parity and latency checks share: input specs, seeded inputs, name matching, .npz files.

Specs come from core.inputs (text syntax `x: float32[batch(1..64), 3, 224, 224]`); when none is
given, an ONNX runner's declared inputs stand in (`specs_from_runner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CheckFailed, CheckpointError
from core.files import write_atomically
from core.inputs import EXAMPLE, Dim, InputSpec, example_inputs, parse_specs
from core.runtime.base import Runner


def resolve_specs(spec: str | Sequence[InputSpec] | None,
                  runners: Sequence[Runner]) -> list[InputSpec]:
    """Parse a spec text (or take specs as they are); without one, use an ONNX runner's inputs."""
    if isinstance(spec, str):
        try:
            return parse_specs(spec)
        except CheckpointError as exc:
            raise CheckFailed(exc.message, exc.details) from None
    if spec:
        return list(spec)
    for runner in runners:  # a Hugging Face folder's runner knows realistic inputs (padded masks)
        if getattr(runner, "input_specs", None):
            return list(runner.input_specs)  # type: ignore[attr-defined]
    for runner in runners:
        specs = specs_from_runner(runner)
        if specs:
            return specs
    raise CheckFailed(f"Give the model's inputs with --input, e.g. '{EXAMPLE}'.")


def specs_from_runner(runner: Runner) -> list[InputSpec]:
    """Specs from the declared input shapes of a runner that has them (onnxruntime): a named axis
    becomes a dynamic dim (the leading one named 'batch' when unnamed), a number a static one."""
    shapes: dict[str, list[Any]] | None = getattr(runner, "input_shapes", None)
    types: dict[str, str] = getattr(runner, "input_types", {})
    if not shapes:
        return []
    specs = []
    for name, shape in shapes.items():
        dims = []
        for axis, size in enumerate(shape):
            if isinstance(size, int) and size > 0:
                dims.append(Dim(value=size))
            else:
                label = size if isinstance(size, str) and size.isidentifier() else None
                dims.append(Dim(label or ("batch" if axis == 0 else f"{name}_dim{axis}")))
        specs.append(InputSpec(name, types.get(name, "float32"), tuple(dims)))
    return specs


def make_inputs(specs: Sequence[InputSpec], point: dict[str, int] | None,
                seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs at the sizes of `point` (see core.inputs.example_inputs), as numpy;
    bfloat16 inputs come as float32 (torch runners cast them back from the spec)."""
    try:
        tensors = example_inputs(list(specs), point, seed)
    except CheckpointError as exc:
        raise CheckFailed(exc.message, exc.details) from None
    out = {}
    for name, tensor in tensors.items():
        out[name] = (tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor).numpy()
    return out


def spec_dtypes(specs: Sequence[InputSpec]) -> dict[str, str]:
    return {s.name: s.dtype for s in specs}


def match_names(given: Sequence[str], runner: Runner, notes: list[str]) -> dict[str, str]:
    """Map the given input names onto the runner's: by name when they agree, else by position (with
    a note saying so); a different count is a CheckFailed."""
    wanted = runner.input_names
    if set(given) == set(wanted):
        return {n: n for n in given}
    if len(given) != len(wanted):
        raise CheckFailed(f"The inputs give {len(given)} tensors ({', '.join(given)}) but the "
                          f"model run by {runner.name} takes {len(wanted)} ({', '.join(wanted)}).")
    notes.append(f"The inputs of {runner.name} ({', '.join(wanted)}) are named differently "
                 f"from the given ones ({', '.join(given)}); they were matched by position.")
    return dict(zip(given, wanted, strict=True))


def carry_dtypes(specs: Sequence[InputSpec], runner: Runner, mapping: dict[str, str]) -> None:
    """Tell a torch runner which inputs are bfloat16 (numpy has no bfloat16; they travel as
    float32 and the runner casts them back)."""
    wanted = getattr(runner, "input_dtypes", None)
    if wanted is None:
        return
    for spec in specs:
        if spec.dtype == "bfloat16" and spec.name in mapping:
            wanted.setdefault(mapping[spec.name], "bfloat16")


def rename(arrays: dict[str, np.ndarray], mapping: dict[str, str]) -> dict[str, np.ndarray]:
    return {mapping[k]: v for k, v in arrays.items()}


def load_cases(paths: Sequence[str | Path]) -> list[dict[str, np.ndarray]]:
    """One input case per .npz file. Keys 'input.NAME' (as our saved failures have) are the inputs;
    a file without such keys is all inputs. Never unpickles (allow_pickle=False)."""
    cases = []
    for path in map(Path, paths):
        if not path.is_file():
            raise CheckFailed(f"The input file '{path}' does not exist.")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:
            raise CheckFailed(f"'{path.name}' is not a readable .npz file of input arrays.",
                              f"{type(exc).__name__}: {exc}") from None
        tagged = {k[6:]: v for k, v in arrays.items() if k.startswith("input.")}
        cases.append(tagged or {k: v for k, v in arrays.items() if k != "meta"})
    return cases


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically: temp file in the same folder (0666 less the umask, like any saved file),
    fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    return path


"""The one small interface every backend shares (Polygraphy-style): `run` validates, `_run_impl` runs.

    runner = build_runner("model.onnx")            # see core.runtime.build_runner
    outputs = runner.run({"x": np.zeros((1, 3, 224, 224), np.float32)})

`run` checks the input names, turns each value into a contiguous numpy array, lets the backend
convert it (`_feed`, e.g. numpy -> torch once) and calls `call`, which turns any backend error into a
`CheckFailed` with one plain sentence. The latency check calls `prepare` once and then times `call`
alone, so validation and conversion never count as inference time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.errors import CheckFailed, CheckpointError


class Runner:
    """Base of every backend. Subclasses set the attributes and implement `_run_impl`."""

    backend = "runner"

    def __init__(self, name: str, input_names: list[str], output_names: list[str] | None = None,
                 device: str = "cpu", load_seconds: float = 0.0, threads: int | None = None,
                 source: str | None = None) -> None:
        self.name = name
        self.input_names = list(input_names)
        self.output_names = list(output_names or [])
        self.device = device
        self.load_seconds = load_seconds
        self.threads = threads
        self.source = source
        self.output_dtypes: dict[str, str] = {}  # torch name when numpy cannot hold it (bfloat16)

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once on `inputs` (name -> array); outputs by name, in the model's order."""
        return self.call(self.prepare(inputs))

    def prepare(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Check names and values; returns what `call` takes (the backend's own input form)."""
        unknown = [k for k in inputs if k not in self.input_names]
        if unknown:
            raise CheckFailed(f"The model run by {self.name} has no input named '{unknown[0]}'; "
                              f"its inputs are: {', '.join(self.input_names) or 'none'}.")
        missing = [k for k in self.input_names if k not in inputs]
        if missing:
            raise CheckFailed(f"The model run by {self.name} needs the input '{missing[0]}', "
                              "which was not given.")
        arrays = {}
        for name in self.input_names:
            array = np.ascontiguousarray(inputs[name])
            if array.dtype == object:
                raise CheckFailed(f"The input '{name}' is not an array of numbers.")
            arrays[name] = array
        return self._feed(arrays)

    def call(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run on an already prepared feed; backend errors become CheckFailed."""
        try:
            return self._run_impl(feed)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckFailed(f"Running {self.name} failed on {shapes_text(feed)}: "
                              f"{error_line(exc)}", f"{type(exc).__name__}: {exc}") from None

    def _feed(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return arrays

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "device": self.device,
                "load_seconds": self.load_seconds, "threads": self.threads, "source": self.source,
                "input_names": self.input_names, "output_names": self.output_names}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} on {self.device}>"


def shapes_text(feed: Mapping[str, Any]) -> str:
    """'x [16, 3, 8, 8], mask [16, 6]' for any arrays or tensors."""
    return ", ".join(f"{k} {list(getattr(v, 'shape', ()))}" for k, v in feed.items()) or "no inputs"


def error_line(exc: BaseException) -> str:
    """The gist of a backend's error as the end of a sentence (ORT prefixes and blank lines gone)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text.strip())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    gist = " ".join(lines[:3]) if lines else type(exc).__name__
    gist = gist if len(gist) <= 300 else gist[:297] + "..."
    return gist if gist.endswith((".", "!", "?")) else gist + "."


def output_names_for(count: int) -> list[str]:
    """Default names of a torch model's flattened outputs (as core.export names them)."""
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]

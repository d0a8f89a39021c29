"""An ExecuTorch .pte program run by executorch.runtime (its `forward` method). A .pte holds no
Python, only a program of registered operators and delegate blobs, so it needs no --trust. It does
not keep input names: they are input_0, input_1, ... (parity matches them by position)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CheckFailed
from core.runtime.base import Runner, output_names_for


def sniff(path: Path) -> bool:
    """ExecuTorch's flatbuffer: the file identifier 'ET' + two digits at offset 4 ('ET12')."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:6] == b"ET" and head[6:8].isdigit()


def load_method(path: str) -> Any:
    """The program's `forward` method, loaded by the ExecuTorch runtime."""
    from executorch.runtime import Runtime, Verification

    program = Runtime.get().load_program(Path(path), verification=Verification.Minimal)
    return program.load_method("forward")


class ExecuTorchRunner(Runner):
    backend = "executorch"

    def __init__(self, method: Any, name: str, input_count: int, load_seconds: float,
                 source: str) -> None:
        super().__init__(name, [f"input_{i}" for i in range(input_count)], None, "cpu",
                         load_seconds, None, source)
        self.method = method

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> ExecuTorchRunner:
        from core.capabilities import executorch_runtime_problem

        problem = executorch_runtime_problem()
        if problem:
            raise CheckFailed(f"'{path}' is an ExecuTorch program, which cannot run here: "
                              f"{problem}.")
        if device not in ("cpu", "auto"):
            raise CheckFailed("ExecuTorch programs run on the CPU here; use --device cpu.")
        start = time.perf_counter_ns()
        try:
            method = load_method(str(path))
        except Exception as exc:
            raise CheckFailed(f"Loading the ExecuTorch program '{path}' failed.",
                              f"{type(exc).__name__}: {exc}") from None
        seconds = (time.perf_counter_ns() - start) / 1e9
        count = int(method.metadata.num_inputs())
        return cls(method, f"executorch ({Path(path).name})", count, seconds, str(path))

    def _feed(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v.copy() if not v.flags.writeable else v)
                for k, v in arrays.items()}

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        outputs = self.method.execute(list(feed.values()))
        self.output_names = self.output_names or output_names_for(len(outputs))
        return {n: np.array(t.numpy(), copy=True)
                for n, t in zip(self.output_names, outputs, strict=True)}

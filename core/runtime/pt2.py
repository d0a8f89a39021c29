"""A .pt2 ExportedProgram (torch.export.load(...).module()); code, so only with trust=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.runtime.torch_common import TorchRunner, load_timed, untrusted


class Pt2Runner(TorchRunner):
    backend = "pt2"

    @classmethod
    def load(cls, path: str | Path, trust: bool = False, **kwargs: Any) -> Pt2Runner:
        import torch

        path = str(path)
        if not trust:
            raise untrusted(path, ".pt2 ExportedProgram")
        module, seconds = load_timed(lambda: torch.export.load(path).module(),
                                     ".pt2 ExportedProgram", path)
        return cls(module, f"pt2 ({Path(path).name})", load_seconds=seconds, source=path,
                   **kwargs)

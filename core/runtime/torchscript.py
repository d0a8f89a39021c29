"""A TorchScript program (torch.jit.load); it is code, so it loads only with trust=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.runtime.torch_common import TorchRunner, load_timed, resolve_device, untrusted


class TorchScriptRunner(TorchRunner):
    backend = "torchscript"

    @classmethod
    def load(cls, path: str | Path, trust: bool = False, device: str = "cpu",
             **kwargs: Any) -> TorchScriptRunner:
        import torch

        path = str(path)
        if not trust:
            raise untrusted(path, "TorchScript program")
        where = resolve_device(device)
        module, seconds = load_timed(lambda: torch.jit.load(path, map_location=where),
                                     "TorchScript program", path)
        module.eval()
        return cls(module, f"torchscript ({Path(path).name})", device=where,
                   load_seconds=seconds, source=path, **kwargs)

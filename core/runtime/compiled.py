"""An nn.Module wrapped in torch.compile. Compiling happens on the first run (latency reports it as
the first-inference time, never as steady state)."""

from __future__ import annotations

from typing import Any

from core.runtime.torch_common import TorchRunner


class CompiledRunner(TorchRunner):
    backend = "compiled"

    def __init__(self, module: Any, name: str = "compiled", compile_backend: str = "inductor",
                 mode: str | None = None, **kwargs: Any) -> None:
        import torch

        module.eval()
        super().__init__(module, name, **kwargs)  # moves the module to the device first
        self.eager = self.module
        self.module = torch.compile(self.module, backend=compile_backend, mode=mode)
        self.compile_backend = compile_backend

    def info(self) -> dict[str, Any]:
        return super().info() | {"compile_backend": self.compile_backend}

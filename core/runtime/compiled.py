"""An nn.Module wrapped in torch.compile. Compiling happens on the first run (latency reports it as
the first-inference time, never as steady state)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from core.errors import CheckFailed
from core.runtime.torch_common import TorchRunner

# torch.compile's default backend writes C++ and builds it with the machine's compiler, against
# Python's headers: neither exists inside the installed (frozen) app.
NEEDS_TOOLCHAIN = {"inductor"}


def missing_toolchain() -> str | None:
    """Why inductor can't build code here, in a sentence; None when it can."""
    if getattr(sys, "frozen", False):
        return "the installed app carries no C++ compiler or Python headers for it"
    compilers = [os.environ.get("CXX") or "g++", "clang++"]
    if not any(shutil.which(name) for name in compilers):
        return "no C++ compiler (g++ or clang++) was found on this machine"
    return None


class CompiledRunner(TorchRunner):
    backend = "compiled"

    def __init__(self, module: Any, name: str = "compiled", compile_backend: str = "inductor",
                 mode: str | None = None, **kwargs: Any) -> None:
        import torch

        reason = missing_toolchain() if compile_backend in NEEDS_TOOLCHAIN else None
        if reason:
            raise CheckFailed(f"torch.compile needs a C++ compiler, but {reason}. Run the check "
                              "without compiling, or from a pip installation on a machine with g++.")
        module.eval()
        super().__init__(module, name, **kwargs)  # moves the module to the device first
        self.eager = self.module
        self.module = torch.compile(self.module, backend=compile_backend, mode=mode)
        self.compile_backend = compile_backend

    def info(self) -> dict[str, Any]:
        return super().info() | {"compile_backend": self.compile_backend}

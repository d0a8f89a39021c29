"""An nn.Module run as is (eval mode, under torch.inference_mode)."""

from __future__ import annotations

from typing import Any

from core.runtime.torch_common import TorchRunner


class EagerRunner(TorchRunner):
    backend = "eager"

    def __init__(self, module: Any, name: str = "eager", **kwargs: Any) -> None:
        module.eval()
        super().__init__(module, name, **kwargs)

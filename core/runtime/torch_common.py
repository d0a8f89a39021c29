"""What the PyTorch runners share: numpy <-> torch, flattening outputs, input names, devices."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from core.errors import CheckFailed
from core.runtime.base import Runner, output_names_for


class TorchRunner(Runner):
    """Runs a callable torch module (eager, TorchScript, unlifted ExportedProgram, compiled)."""

    def __init__(self, module: Any, name: str, input_names: list[str] | None = None,
                 device: str = "cpu", load_seconds: float = 0.0, source: str | None = None,
                 input_dtypes: dict[str, str] | None = None,
                 output_names: list[str] | None = None) -> None:
        import torch

        self.torch_device = torch.device(resolve_device(device))
        if hasattr(module, "to") and self.torch_device.type != "cpu":
            module = module.to(self.torch_device)
        self.module = module
        super().__init__(name, input_names or forward_names(module), output_names,
                         str(self.torch_device), load_seconds, torch.get_num_threads(), source)
        self.input_dtypes = dict(input_dtypes or {})
        self._fixed_output_names = bool(output_names)

    def _feed(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        feed = {}
        for name, array in arrays.items():
            tensor = torch.from_numpy(array.copy() if not array.flags.writeable else array)
            want = self.input_dtypes.get(name)
            if want and str(tensor.dtype) != f"torch.{want}":
                tensor = tensor.to(getattr(torch, want))
            feed[name] = tensor.to(self.torch_device)
        return feed

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            result = self.module(*feed.values())
        tensors = flatten(result)
        if not self._fixed_output_names or len(self.output_names) != len(tensors):
            self.output_names = output_names_for(len(tensors))
        return {n: to_numpy(t, n, self.output_dtypes)
                for n, t in zip(self.output_names, tensors, strict=True)}


def to_numpy(value: Any, name: str, dtypes: dict[str, str]) -> np.ndarray:
    """A torch tensor (or number) as numpy; bfloat16 becomes float32 and is noted in `dtypes`."""
    import torch

    if not isinstance(value, torch.Tensor):
        return np.asarray(value)
    tensor = value.detach()
    if tensor.dtype == torch.bfloat16:
        dtypes[name] = "bfloat16"
        tensor = tensor.float()
    return tensor.cpu().numpy()


def flatten(value: Any) -> list[Any]:
    """Tensors of a nested output (tuple/list/dict) in pytree order."""
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flatten(v)]
    if isinstance(value, dict):
        return [t for k in value for t in flatten(value[k])]
    return [] if value is None else [value]


def forward_names(module: Any) -> list[str]:
    """Names of `forward`'s tensor parameters (TorchScript: from its schema)."""
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        return [a.name for a in schema.arguments if a.name != "self"]
    try:
        params = list(inspect.signature(module.forward if hasattr(module, "forward")
                                        else module).parameters.values())
    except (TypeError, ValueError):
        return ["x"]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    return required or [p.name for p in positional[:1]] or ["x"]


def resolve_device(device: str) -> str:
    """'cpu' | 'cuda' | 'auto' (cuda when available) -> a torch device string."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckFailed("CUDA was asked for, but this PyTorch has no usable GPU; use --device cpu.")
    return device


def load_timed(load: Any, what: str, path: str) -> tuple[Any, float]:
    """Call `load()` and time it; a failure becomes CheckFailed naming the file."""
    import time

    start = time.perf_counter_ns()
    try:
        value = load()
    except Exception as exc:
        raise CheckFailed(f"Loading the {what} '{path}' failed.",
                          f"{type(exc).__name__}: {exc}") from None
    return value, (time.perf_counter_ns() - start) / 1e9


def untrusted(path: str, what: str) -> CheckFailed:
    return CheckFailed(f"'{path}' is a {what}: running it runs code stored in the file; allow "
                       "that only for files you trust (--trust).")

"""An ONNX model in an onnxruntime InferenceSession (CPU by default; CUDA when asked and available)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CheckFailed
from core.runtime.base import Runner

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(bfloat16)": "bfloat16", "tensor(int64)": "int64", "tensor(int32)": "int32",
             "tensor(int16)": "int16", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
             "tensor(bool)": "bool"}
PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, session: Any, name: str, load_seconds: float = 0.0,
                 threads: int | None = None, source: str | None = None) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        super().__init__(name, [i.name for i in inputs], [o.name for o in outputs],
                         device=session.get_providers()[0], load_seconds=load_seconds,
                         threads=threads, source=source)
        self.session = session
        self.input_types = {i.name: ORT_TYPES.get(i.type, i.type) for i in inputs}
        self.input_shapes = {i.name: list(i.shape) for i in inputs}  # ints, names or None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", providers: list[str] | None = None,
             threads: int | None = None) -> OnnxRuntimeRunner:
        """`device` 'cpu' | 'cuda' | 'auto' (CUDA when available); `providers` overrides it.
        `threads` sets intra-op threads (None: onnxruntime's default, recorded as None)."""
        import onnxruntime as ort

        path = str(path)
        chosen = providers or choose_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
        start = time.perf_counter_ns()
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=chosen)
        except Exception as exc:
            raise CheckFailed(f"onnxruntime could not load '{Path(path).name}'.",
                              f"{type(exc).__name__}: {exc}") from None
        seconds = (time.perf_counter_ns() - start) / 1e9
        return cls(session, f"onnxruntime ({Path(path).name})", seconds, threads, path)

    def _feed(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Cast within a kind (float64 -> float32, int32 -> int64) to the type the model declares;
        onnxruntime refuses any other type than the declared one."""
        feed = {}
        for name, array in arrays.items():
            want = self.input_types.get(name, "")
            if (want in ORT_TYPES.values() and want not in ("bfloat16", array.dtype.name)
                    and _kind(array.dtype.name) == _kind(want)):
                array = array.astype(want)
            feed[name] = array
        return feed

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))

    def info(self) -> dict[str, Any]:
        return super().info() | {"providers": self.session.get_providers()}


def choose_providers(device: str, available: list[str]) -> list[str]:
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device not in PROVIDERS:
        raise CheckFailed(f"'{device}' is not a device for onnxruntime; use cpu, cuda or auto.")
    if PROVIDERS[device][0] not in available:
        raise CheckFailed(f"onnxruntime here cannot use {device.upper()} (it offers "
                          f"{', '.join(available)}); use --device cpu or install onnxruntime-gpu.")
    return PROVIDERS[device]


def _kind(dtype: str) -> str:
    return "float" if dtype.startswith(("float", "bfloat")) else "bool" if dtype == "bool" else "int"

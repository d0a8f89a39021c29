"""Dynamic int8 quantization (weights int8, activations quantized on the fly) as its own artefacts:

- TorchScript: torch's `quantize_dynamic` of Linear/LSTM/GRU layers, then the TorchScript target;
  checked against the quantized model in eager mode.
- ONNX: onnxruntime's `quantize_dynamic` of the float ONNX file written in the same run (torch's
  quantized ops do not export to ONNX); checked by running it.
Both report `quantization_error`, the largest difference from the float model on the example input.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from core.errors import ExportError
from core.export import onnx as onnx_target
from core.export import torchscript
from core.export.common import (
    ExportResult,
    Job,
    dynamic_dims_of,
    failure,
    finished,
    max_abs_diff,
    quiet,
    staged,
)

SCHEMES = ("dynamic-int8",)
SCHEME = "dynamic-int8"
STAGES = 2


def quantize_dynamic_int8(model: Any) -> Any:
    """A quantized copy of `model` (Linear, LSTM and GRU layers with int8 weights)."""
    import torch
    from torch import nn

    if isinstance(model, torch.jit.ScriptModule):
        raise ExportError("A TorchScript model cannot be quantized here; quantize the model "
                          "before scripting it.")
    layers = (nn.Linear, nn.LSTM, nn.GRU)
    if not any(isinstance(m, layers) for m in model.modules()):
        raise ExportError("Dynamic int8 quantization found no Linear, LSTM or GRU layer in this "
                          "model, so there is nothing to quantize.")
    try:
        with quiet():
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(copy.deepcopy(model), set(layers), dtype=torch.qint8)
    except Exception as exc:
        raise failure("torch could not quantize this model to dynamic int8.", exc) from None


def export_torchscript(job: Job) -> ExportResult:
    return torchscript.export(job, quantize_dynamic_int8(job.model), SCHEME)


def export_onnx(job: Job) -> ExportResult:
    start = time.perf_counter()
    if job.onnx_path is None:
        raise ExportError("The int8 ONNX model is made from the float ONNX model, which was not "
                          "exported in this run.")
    final = f"{job.options.name}.int8.onnx"
    result = ExportResult("onnx", None, exporter="onnxruntime-quantize", quantized=SCHEME,
                          reference="eager-float", input_names=[s.name for s in job.specs],
                          output_names=job.output_names(len(job.expected)),
                          dynamic_dims=dynamic_dims_of(job.specs))
    with staged(job, [final]) as tmp:
        job.stage("quantizing the ONNX model")
        _quantize_file(job, tmp / final)
        result.opset = onnx_target.check_file(tmp / final)
        job.stage("running the int8 ONNX model in onnxruntime")
        got = onnx_target.run_session(onnx_target.open_session(tmp / final), job.inputs)
        result.max_abs_diff = result.quantization_error = max_abs_diff(job.expected, got,
                                                                        "int8 ONNX model")
        if not math.isfinite(result.max_abs_diff):
            raise ExportError("The int8 ONNX model gives non-finite results; it was not saved.")
    return finished(job, result, [final], start)


def _quantize_file(job: Job, dest: Any) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if job.onnx_path is not None and job.onnx_path.with_name(job.onnx_path.name + ".data").exists():
        raise ExportError("The ONNX model stores its weights outside the file (over 2 GB); "
                          "quantize it with onnxruntime's tools directly.")
    try:
        with quiet():
            quantize_dynamic(str(job.onnx_path), str(dest), weight_type=QuantType.QInt8)
    except Exception as exc:
        raise failure("onnxruntime could not quantize the ONNX model to int8.", exc) from None

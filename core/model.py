"""The metadata-only view of an opened file: TensorInfo, Section, Checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.dtypes import itemsize

if TYPE_CHECKING:  # pragma: no cover
    import torch

PARAMETER, BUFFER, UNKNOWN = "parameter", "buffer", "unknown"


@dataclass(frozen=True, slots=True)
class Storage:
    """Where a run of bytes lives. Tensors sharing one Storage are aliases/views of each other.

    `key` identifies the storage inside its file (zip record name, safetensors tensor name,
    onnx initializer name). `encoding` is "raw" for plain bytes at `offset` (mmap-able);
    readers may register other encodings in `core.tensor_io.DECODERS` (e.g. zip-deflated records).
    """

    path: Path
    key: str
    offset: int
    nbytes: int
    dtype: str
    byteorder: str = "little"
    encoding: str = "raw"


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the scan saw that torch.load(weights_only=True) or a careful reader would refuse."""

    kind: str  # "global" | "opcode" | "external-data" | "structure"
    name: str  # e.g. "os.system", "INST", "../weights.bin"
    severity: str  # "dangerous" | "unknown" | "info"
    message: str  # one plain sentence
    where: str = ""  # record inside the file, e.g. "archive/data.pkl"
    blocks_weights_only: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "severity": self.severity,
            "message": self.message, "where": self.where,
            "blocks_weights_only": self.blocks_weights_only,
        }


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    storage: Storage | None = None
    storage_offset: int = 0  # in elements of `dtype`
    stride: tuple[int, ...] | None = None  # None = contiguous
    role: str = UNKNOWN
    requires_grad: bool = False
    quantization: Quantization | None = None  # set for quantized tensors (qint8, quint8, ...)
    stored_as: str = ""  # the file's own encoding when it differs from `dtype`, e.g. GGUF "Q8_0"

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * itemsize(self.dtype)

    @property
    def contiguous_stride(self) -> tuple[int, ...]:
        stride, acc = [], 1
        for dim in reversed(self.shape):
            stride.append(acc)
            acc *= max(dim, 1)
        return tuple(reversed(stride))

    @property
    def is_view(self) -> bool:
        """True when the tensor does not cover its whole storage contiguously."""
        if self.storage is None:
            return False
        contiguous = self.stride is None or self.stride == self.contiguous_stride
        return not contiguous or self.storage_offset != 0 or self.nbytes != self.storage.nbytes

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
            "nbytes": self.nbytes, "numel": self.numel, "role": self.role,
        }
        if self.quantization is not None:
            out["quantization"] = self.quantization.to_dict()
        if self.stored_as:
            out["stored_as"] = self.stored_as
        return out


PER_TENSOR_AFFINE = "per_tensor_affine"
PER_CHANNEL_AFFINE = "per_channel_affine"
PER_CHANNEL_FLOAT_QPARAMS = "per_channel_affine_float_qparams"


@dataclass(frozen=True, slots=True)
class Quantization:
    """How a quantized tensor's stored integers map to real values: (q - zero_point) * scale.

    Per tensor: `scale` and `zero_point`. Per channel (along `axis`): `scales` and `zero_points`,
    each a TensorInfo (how torch.save writes them; their bytes are read only on demand) or, in
    files from old torch versions, a tuple of numbers. `scheme` is what torch.load's tensor
    reports as `qscheme()` (a per-channel tensor with float zero points is
    "per_channel_affine_float_qparams", whatever name the file uses).
    """

    scheme: str
    scale: float | None = None
    zero_point: int | None = None
    axis: int | None = None
    scales: TensorInfo | tuple[float, ...] | None = None
    zero_points: TensorInfo | tuple[int | float, ...] | None = None

    @property
    def channels(self) -> int:
        values = self.scales
        return values.numel if isinstance(values, TensorInfo) else len(values or ())

    def describe(self) -> str:
        """E.g. "per-tensor affine, scale 0.02, zero point 0"."""
        if self.scheme == PER_TENSOR_AFFINE:
            return f"per-tensor affine, scale {self.scale:.6g}, zero point {self.zero_point}"
        kind = "per-channel affine" + (", float zero points"
                                       if self.scheme == PER_CHANNEL_FLOAT_QPARAMS else "")
        return f"{kind}, axis {self.axis}, {self.channels} channels"

    def to_dict(self) -> dict[str, Any]:
        if self.scheme == PER_TENSOR_AFFINE:
            return {"scheme": self.scheme, "scale": self.scale, "zero_point": self.zero_point}
        floats = self.scheme == PER_CHANNEL_FLOAT_QPARAMS  # lists: the types torch.load makes
        return {"scheme": self.scheme, "axis": self.axis, "channels": self.channels,
                "scales_dtype": _values_dtype(self.scales, "float32" if floats else "float64"),
                "zero_points_dtype": _values_dtype(self.zero_points,
                                                   "float32" if floats else "int64")}


def _values_dtype(values: TensorInfo | tuple[Any, ...] | None, listed: str) -> str:
    return values.dtype if isinstance(values, TensorInfo) else listed


@dataclass
class Section:
    """A named group of tensors (model, ema, optimizer, ...) plus its non-tensor values."""

    name: str
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    source_path: str = ""  # where in the file's object tree it was found, e.g. "state_dict"
    common_prefix: str = ""  # e.g. "module." or "model." when every key has it

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors.values() if t.role != BUFFER)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())


@dataclass
class Checkpoint:
    path: Path
    format: str
    sections: dict[str, Section] = field(default_factory=dict)
    weights: str | None = None  # name of the section a user means by "the model"
    metadata: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def all_tensors(self) -> list[TensorInfo]:
        return [t for s in self.sections.values() for t in s.tensors.values()]

    def find(self, name: str, section: str | None = None) -> TensorInfo:
        from core.errors import CheckpointError

        order = [section] if section else [self.weights, *self.sections]
        for sname in order:
            sec = self.sections.get(sname) if sname else None
            if sec is not None and name in sec.tensors:
                return sec.tensors[name]
        raise CheckpointError(f"There is no tensor named '{name}' in this file.")

    def read(self, name: str, section: str | None = None) -> torch.Tensor:
        """One tensor as torch would load it, built from the mapped bytes (imports torch)."""
        from core.tensor_io import read_tensor

        return read_tensor(self.find(name, section))


@dataclass
class Opaque:
    """Stands in for an object the file wanted to build from a global we never import or call.

    `qualname` is the global ("os.system", "__main__.Net"); `args` what REDUCE/NEWOBJ would have
    passed to it; `state` what BUILD would have set. Layout looks inside for tensors.
    """

    qualname: str
    args: tuple[Any, ...] = ()
    state: Any = None
    items: list[Any] = field(default_factory=list)  # APPEND(S)/SETITEM(S) on an opaque object

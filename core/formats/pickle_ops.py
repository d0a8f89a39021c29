"""The few globals torch writes for tensors, storages and containers, as inert markers + our handlers.

Nothing here is imported from, or called on behalf of, the file: a global the file names either maps
to a marker below (and REDUCE/NEWOBJ on it runs one of OUR functions in `HANDLERS`), or it becomes
an `Opaque` with a finding (decided by the interpreter in `pickle_vm`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from core.dtypes import ITEMSIZE, STORAGE_CLASS, is_floating, is_quantized, storage_bytes_for
from core.errors import CorruptFile, UnsupportedFormat
from core.formats.pickle_checks import check_keys
from core.model import (
    PER_CHANNEL_AFFINE,
    PER_CHANNEL_FLOAT_QPARAMS,
    PER_TENSOR_AFFINE,
    Quantization,
    Storage,
    TensorInfo,
)

MALFORMED = "The file's internal data is malformed; the file is damaged or not a real checkpoint."
_BAD_TENSOR = "A tensor in the file is described inconsistently; the file is damaged."


@dataclass(frozen=True)
class Ref:
    """An allowlisted global, held by name only (never imported)."""

    qualname: str


@dataclass(frozen=True)
class DType:
    """A torch dtype global such as torch.float16, by its torch name."""

    name: str

    def __repr__(self) -> str:  # shown as a plain value (a packed-params entry's dtype, say)
        return f"torch.{self.name}"


@dataclass(frozen=True)
class StorageType:
    """A storage class global such as torch.FloatStorage, by the dtype it stores."""

    dtype: str
    qualname: str = ""


@dataclass(frozen=True)
class QScheme:
    """A quantization scheme constant such as torch.per_tensor_affine, by name."""

    name: str


# torch.<name> qscheme constants torch.load(weights_only=True) accepts
QSCHEMES = {"per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
            "per_channel_symmetric", "per_channel_affine_float_qparams"}


class PickledOrderedDict(OrderedDict):
    """collections.OrderedDict from the file; BUILD state (e.g. `_metadata`) goes to `attrs`.
    torch.save writes an empty one per tensor (its hooks): no per-instance dict until BUILD."""

    __slots__ = ("attrs",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.attrs: dict[Any, Any] | None = None


def brief(value: Any) -> str:
    """A short description of a value from the file for error details; never recurses deeply."""
    if type(value) is int and value.bit_length() > 64:
        return "a very large integer"
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return repr(value)[:100]
    if isinstance(value, (tuple, list)) and len(value) <= 8 and all(
            isinstance(v, (str, bytes, float, bool, type(None))) or type(v) is int
            and v.bit_length() <= 64 for v in value):
        return repr(value)[:200]
    return f"a {type(value).__name__}"


def resolve_global(qualname: str) -> Any | None:
    """The inert marker for an allowlisted global, or None when the global is not allowed."""
    module, _, name = qualname.rpartition(".")
    if name in STORAGE_CLASS:  # torch's own find_class maps any "...<X>Storage" this way
        return StorageType(STORAGE_CLASS[name], qualname)
    if qualname in ("torch.storage.UntypedStorage", "torch.UntypedStorage"):
        return StorageType("uint8", qualname)
    if module == "torch" and name in ITEMSIZE:
        return DType(name)
    if module == "torch" and name in QSCHEMES:
        return QScheme(name)
    if qualname in HANDLERS or qualname in TYPE_MARKERS:
        return Ref(qualname)
    return None


def tensor_info(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None,
                requires_grad: Any = False) -> TensorInfo:
    """A TensorInfo checked to lie inside its storage (no data is read)."""
    if not isinstance(storage, Storage):
        raise CorruptFile(_BAD_TENSOR, f"tensor storage is {type(storage).__name__}")
    dtype = dtype or storage.dtype
    shape, strides = _dims(size, "size"), _dims(stride, "stride")
    if len(strides) != len(shape) or not _is_count(offset) or _numel_overflows(shape):
        raise CorruptFile(_BAD_TENSOR, f"size {shape}, stride {strides}, offset {brief(offset)}")
    info = TensorInfo("", shape, dtype, storage, offset, strides,
                      requires_grad=requires_grad is True)
    if info.nbytes >= 2**63:  # a view repeating a few values (stride 0) beyond what any file holds
        raise CorruptFile("A tensor in the file repeats its values to more than 8 exabytes; it "
                          "cannot be read or converted.", f"size {shape}, stride {strides}")
    if info.numel:
        last = offset + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        needed = storage_bytes_for(dtype, last + 1)
        if needed > storage.nbytes:
            raise CorruptFile("A tensor points outside its stored data; the file is damaged.",
                              f"needs {needed} bytes, storage {storage.key} has {storage.nbytes}")
    return info


def _dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_count(v) for v in value):
        raise CorruptFile(_BAD_TENSOR, f"tensor {what} is {brief(value)}")
    return tuple(value)


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**63  # torch holds sizes in int64


def _numel_overflows(shape: tuple[int, ...]) -> bool:
    """torch refuses a size whose product overflows 64 bits at any step, even if a later
    dimension is 0 (c10::safe_multiply_u64), or ends above the int64 range."""
    product = 1
    for dim in shape:
        product *= dim
        if product >= 2**64:
            return True
    return product >= 2**63


def _dtype(value: Any) -> str:
    if not isinstance(value, DType) or value.name not in ITEMSIZE:
        raise CorruptFile(_BAD_TENSOR, f"dtype is {brief(value)}")
    return value.name


def _tensor(value: Any) -> TensorInfo:
    if not isinstance(value, TensorInfo):
        raise CorruptFile(_BAD_TENSOR, f"expected a tensor, got {type(value).__name__}")
    return value


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorInfo:
    return tensor_info(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, metadata: Any = None) -> TensorInfo:
    _check_metadata(metadata)
    return tensor_info(storage, offset, size, stride, requires_grad=requires_grad)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, dtype: Any, metadata: Any = None) -> TensorInfo:
    _check_metadata(metadata)
    return tensor_info(storage, offset, size, stride, _dtype(dtype), requires_grad)


def _check_metadata(metadata: Any) -> None:
    """torch.load applies a tensor's metadata flags: 'neg' (torch.save writes it for a x.neg()
    view) negates every value, 'conj' conjugates, whatever value the flag has. We do not
    reproduce them, so such a tensor is refused instead of shown with the wrong sign."""
    if not metadata:
        return  # torch ignores an empty one
    if not isinstance(metadata, dict) or not all(type(k) is str and type(v) is bool
                                                 for k, v in metadata.items()):
        raise CorruptFile(_BAD_TENSOR, f"tensor metadata {brief(metadata)}")
    flags = sorted({"neg", "conj"} & set(metadata))
    if flags:
        what = {"neg": "negated", "conj": "complex-conjugated"}
        raise UnsupportedFormat(
            f"A tensor in the file is stored {' and '.join(what[f] for f in flags)} (a lazy view "
            "that torch applies when loading); this app cannot read it yet and did not open the "
            "file, rather than show wrong values. Saving a copy (x.clone()) avoids it.",
            f"tensor metadata {brief(metadata)}")


def check_no_state(state: Any) -> None:
    """torch sets every attribute of a tensor's saved state on the loaded tensor
    (torch._utils._set_obj_state). Plain Python attributes (`t.note = "x"`) leave its values
    alone; a name torch.Tensor has (`data`, `requires_grad`, `__class__`, ...) would change what
    torch loads, so such a state is refused instead of shown differently."""
    parts = state if isinstance(state, tuple) else (state, None)
    if len(parts) != 2 or not all(not part or isinstance(part, dict) and all(
            type(k) is str and not _tensor_has(k) for k in part) for part in parts):
        raise CorruptFile("A tensor in the file carries extra settings that torch would apply "
                          "to it when loading; this app cannot show it exactly as torch loads it, "
                          "so the file was not opened.", f"tensor state {brief(state)}")


def _tensor_has(name: str) -> bool:
    try:
        import torch
    except ImportError:  # cannot tell without torch: treat every name as one that matters
        return True
    return hasattr(torch.nn.Parameter, name)  # a subclass of torch.Tensor: covers both


_BAD_QTENSOR = "A quantized tensor in the file is described inconsistently; the file is damaged."
_LOADABLE = {PER_TENSOR_AFFINE, PER_CHANNEL_AFFINE, PER_CHANNEL_FLOAT_QPARAMS}


def _rebuild_qtensor(storage: Any, offset: Any, size: Any, stride: Any, quantizer_params: Any,
                     requires_grad: Any, hooks: Any) -> TensorInfo:
    """torch._utils._rebuild_qtensor: the tensor's layout plus its quantization, only recorded.

    Accepts what torch.load accepts (a quantized storage; per-tensor or per-channel affine
    parameters with per-channel lengths matching the axis) and refuses the rest as damaged."""
    if not isinstance(storage, Storage) or not is_quantized(storage.dtype):
        what = storage.dtype if isinstance(storage, Storage) else type(storage).__name__
        raise CorruptFile(_BAD_QTENSOR, f"quantized tensor storage is {what}")
    info = tensor_info(storage, offset, size, stride, requires_grad=requires_grad)
    return replace(info, quantization=_quantization(quantizer_params, info.shape))


def _quantization(params: Any, shape: tuple[int, ...]) -> Quantization:
    scheme = params[0] if isinstance(params, tuple) and params else None
    name = scheme.name if isinstance(scheme, QScheme) else None
    if name is not None and name not in _LOADABLE:  # torch.load raises for these too
        raise CorruptFile("The file holds a quantized tensor of a kind torch cannot load "
                          f"({name}); the file is damaged.", f"qscheme {name}")
    if name == PER_TENSOR_AFFINE and len(params) == 3:
        _, scale, zero_point = params
        if _is_number(scale) and _is_int64(zero_point):
            return Quantization(PER_TENSOR_AFFINE, scale=float(scale), zero_point=zero_point)
    elif name is not None and len(params) == 4:
        return _per_channel(name, *params[1:], shape)
    raise CorruptFile(_BAD_QTENSOR, f"quantizer parameters are {brief(params)}")


def _per_channel(name: str, scales: Any, zero_points: Any, axis: Any,
                 shape: tuple[int, ...]) -> Quantization:
    if type(axis) is not int or not 0 <= axis < len(shape):
        raise CorruptFile(_BAD_QTENSOR, f"per-channel axis {brief(axis)} for shape {shape}")
    if type(scales) is list and type(zero_points) is list:  # files from old torch versions
        if not (all(_is_number(v) for v in scales)
                and all(_is_number(v) if name == PER_CHANNEL_FLOAT_QPARAMS else _is_int64(v)
                        for v in zero_points)):
            raise CorruptFile(_BAD_QTENSOR, "per-channel scales or zero points are not numbers")
        scales, zero_points = tuple(float(v) for v in scales), tuple(zero_points)
        counts = len(scales), len(zero_points)
    elif all(isinstance(v, TensorInfo) and v.storage is not None and v.quantization is None
             for v in (scales, zero_points)):
        counts = scales.numel, zero_points.numel
        integral = zero_points.dtype in ("int64", "int32", "int16", "int8", "uint8")
        if not is_floating(scales.dtype) or not (integral or is_floating(zero_points.dtype)):
            raise CorruptFile(_BAD_QTENSOR, f"per-channel scales are {scales.dtype}, zero points "
                                            f"{zero_points.dtype}")
        # torch.save names float-qparams tensors per_channel_affine; the zero points decide
        name = PER_CHANNEL_FLOAT_QPARAMS if is_floating(zero_points.dtype) else PER_CHANNEL_AFFINE
    else:
        raise CorruptFile(_BAD_QTENSOR, f"per-channel scales {brief(scales)}, zero points "
                                        f"{brief(zero_points)}")
    if counts != (shape[axis], shape[axis]):
        raise CorruptFile(_BAD_QTENSOR, f"{counts[0]} scales and {counts[1]} zero points for "
                                        f"{shape[axis]} channels")
    return Quantization(name, axis=axis, scales=scales, zero_points=zero_points)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int and -2**63 <= value < 2**63


def _is_int64(value: Any) -> bool:
    return type(value) is int and -2**63 <= value < 2**63


def _rebuild_parameter(data: Any, requires_grad: Any = True, hooks: Any = None,
                       state: Any = None) -> TensorInfo:
    check_no_state(state)
    if data is None:  # Parameter() with no data is an empty float tensor
        return TensorInfo("", (0,), "float32", None, requires_grad=requires_grad is True)
    return replace(_tensor(data), requires_grad=requires_grad is True)


def _rebuild_meta(dtype: Any, size: Any, stride: Any, requires_grad: Any) -> TensorInfo:
    shape, strides = _dims(size, "size"), _dims(stride, "stride")
    if _numel_overflows(shape):
        raise CorruptFile(_BAD_TENSOR, f"size {shape}")
    return TensorInfo("", shape, _dtype(dtype), None, 0, strides,
                      requires_grad=requires_grad is True)


def _rebuild_device_copy(data: Any, dtype: Any, device: Any, requires_grad: Any) -> TensorInfo:
    return replace(_tensor(data), requires_grad=requires_grad is True)


def _size(*args: Any) -> tuple[int, ...]:
    return _dims(args[0] if args else (), "size")


def _device(kind: Any, index: Any = None) -> str:
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise CorruptFile("A device name in the file is malformed.", f"{brief(kind)}, {brief(index)}")
    return kind if index is None else f"{kind}:{index}"


def _ordered_dict(items: Any = ()) -> PickledOrderedDict:
    if isinstance(items, (list, tuple)):
        check_keys(pair[0] for pair in items if isinstance(pair, (list, tuple)) and pair)
    return PickledOrderedDict(items)


def _counter(items: Any = None) -> dict[Any, Any]:
    return dict(items) if isinstance(items, dict) else {}


def _set(items: Any = ()) -> set[Any]:
    return set(_iterable(items))


def _frozenset(items: Any = ()) -> frozenset[Any]:
    return frozenset(_iterable(items))


def _iterable(items: Any) -> Any:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise CorruptFile("A set in the file is malformed.", type(items).__name__)
    check_keys(items)
    return items


def _bytearray(value: Any = b"", encoding: Any = None) -> bytearray:
    if isinstance(value, (bytes, bytearray)) and encoding is None:
        return bytearray(value)
    if isinstance(value, str) and encoding is not None:
        return bytearray(_encode(value, encoding))
    if isinstance(value, list) and all(type(v) is int and 0 <= v < 256 for v in value):
        return bytearray(value)
    raise CorruptFile("A byte string in the file is malformed.", type(value).__name__)


def _bytes(value: Any = b"", encoding: Any = None) -> bytes:
    return bytes(_bytearray(value, encoding))


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(type(v) in (int, float) for v in (real, imag)):
        raise CorruptFile("A complex number in the file is malformed.")
    return complex(real, imag)


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """_codecs.encode as protocol 2 uses it for bytes: only plain text encodings."""
    codec = str(encoding).lower().replace("_", "-")
    if not isinstance(text, str) or codec not in ("latin1", "latin-1", "iso-8859-1", "utf-8",
                                                   "utf8", "ascii"):
        raise CorruptFile("A byte string in the file is malformed.", f"encoding {brief(encoding)}")
    return text.encode(codec, "strict")


# qualname -> our function, run on REDUCE / NEWOBJ with the file's arguments
HANDLERS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._utils._rebuild_meta_tensor_no_storage": _rebuild_meta,
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _rebuild_device_copy,
    "torch.nn.parameter.Parameter": _rebuild_parameter,
    "torch.Size": _size,
    "torch.device": _device,
    "collections.OrderedDict": _ordered_dict,
    "collections.Counter": _counter,
    "builtins.set": _set,
    "builtins.frozenset": _frozenset,
    "builtins.bytearray": _bytearray,
    "builtins.bytes": _bytes,  # protocol 0-2 write b"" as bytes()
    "builtins.complex": _complex,
    "_codecs.encode": _encode,
}

# allowlisted globals that are only passed around as values (e.g. _rebuild_from_type_v2's type)
TYPE_MARKERS = {"torch.Tensor", "torch._tensor._rebuild_from_type_v2"}
REBUILD_FROM_TYPE = "torch._tensor._rebuild_from_type_v2"

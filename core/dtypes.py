"""Torch dtype names, their sizes, and the names other formats use for them."""

from __future__ import annotations

# torch name -> bytes per element (sub-byte and packed types count their container byte)
ITEMSIZE: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "float8_e4m3fn": 1, "float8_e4m3fnuz": 1, "float8_e5m2": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
    "complex128": 16, "complex64": 8, "complex32": 4,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1,
    "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1,
    "bool": 1,
    "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
    "bits8": 1, "bits16": 2, "bits1x8": 1, "bits2x4": 1, "bits4x2": 1,
}

FLOATING = {
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
}

# torch.<Name>Storage class name -> dtype (what torch.save writes in persistent ids)
STORAGE_CLASS: dict[str, str] = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8", "QInt32Storage": "qint32", "QUInt8Storage": "quint8",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
}

# quantized dtype -> the plain integer type of its stored elements (what `int_repr()` returns);
# their ITEMSIZE above is torch's `element_size()`, the size of the storage element type
QUANTIZED: dict[str, str] = {
    "qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8", "quint2x4": "uint8",
}

# sub-byte quantized types pack several elements into one storage byte: shape and strides count
# elements, the storage holds ceil(elements * bits / 8) bytes (torch's own nbytes still counts 1 B
# per element, as ITEMSIZE does)
PACKED_BITS: dict[str, int] = {"quint4x2": 4, "quint2x4": 2}

# safetensors dtype code -> torch name
SAFETENSORS: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
TO_SAFETENSORS = {v: k for k, v in SAFETENSORS.items()}


def itemsize(dtype: str) -> int:
    return ITEMSIZE[dtype]


def is_floating(dtype: str) -> bool:
    return dtype in FLOATING


def is_quantized(dtype: str) -> bool:
    return dtype in QUANTIZED


def storage_bytes_for(dtype: str, elements: int) -> int:
    """Bytes of storage that hold `elements` elements of `dtype` (packed types share bytes)."""
    bits = PACKED_BITS.get(dtype)
    return -(-elements * bits // 8) if bits else elements * ITEMSIZE[dtype]

"""Float casts without torch: `cast_bytes` turns one chunk of little-endian floats into another
float type with numpy alone, bit for bit what torch's `tensor.to` writes on the CPU.

bfloat16 is float32's top half, so it is read by shifting its bits up (exact) and written by
rounding float32's bits (`_f32_to_bf16`). ml_dtypes, which gives numpy a bfloat16 type, is not
used: its element loop is ~3x slower, and importing its version 0.7 takes ~0.6 s."""

from __future__ import annotations

from typing import Any

from core.convert.transforms import CASTABLE


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


# The NaN bits torch writes (its vectorised CPU loop) where numpy or `_f32_to_bf16` write others, per
# (src, dst): ("f16", _) -> sign | quiet | the top 10 payload bits of the float32 on the way;
# ("set", bits) -> those bits; ("or", bit) -> the quiet bit added. Every other value already
# matches. Checked against torch for every 16-bit pattern and every float32 one (to float16 and
# bfloat16); tests/core/test_cast_bits.py holds us to it.
_NAN_RULES: dict[tuple[str, str], tuple[str, int]] = {
    ("float64", "float16"): ("f16", 0), ("float32", "float16"): ("f16", 0),
    ("bfloat16", "float16"): ("f16", 0),
    ("float64", "bfloat16"): ("set", 0xFFFF), ("float32", "bfloat16"): ("set", 0xFFFF),
    ("float16", "bfloat16"): ("set", 0x7FC0),
    ("float16", "float32"): ("or", 1 << 22), ("float16", "float64"): ("or", 1 << 51),
}
# torch casts float64 and the 16-bit types to a 16-bit type through float32 (two roundings)
_THROUGH_F32 = {("float64", "float16"), ("float64", "bfloat16"), ("float16", "bfloat16"),
                ("bfloat16", "float16")}
_UINT = {8: "uint64", 4: "uint32", 2: "uint16"}
_BLOCK = 1 << 16  # elements: 256 KiB of float32, stays in the CPU cache between the steps


def cast_bytes(data: memoryview | bytes | bytearray, src: str, dst: str,
               bounds: list[int] | None = None, into: bytearray | None = None) -> memoryview:
    """Native-order `src` floats in `data` as `dst` floats, bit for bit what `tensor.to(dst)` writes
    on the CPU: round to nearest even, subnormals kept, overflow to ±inf, torch's NaN bits.

    Both types are one of `CASTABLE` (float64/32/16, bfloat16). numpy alone, no torch.
    `bounds`, for float32 -> bfloat16, gets the smallest and largest |x| as float32 bits, which
    that cast finds on the way (the precision check needs them; NaN counts as largest).
    `into`, when big enough, holds the float32 -> bfloat16 output instead of a new array (a
    stream reuses one buffer: a fresh multi-MB array each chunk costs page faults).
    """
    import numpy as np

    if src not in CASTABLE or dst not in CASTABLE:
        raise ValueError(f"cannot cast {src} to {dst}: only {sorted(CASTABLE)}")
    if src == dst:
        return memoryview(bytearray(data))
    values = float_values(data, src)
    if (src, dst) == ("float32", "bfloat16"):  # the common case, done faster
        return memoryview(_f32_to_bf16(values, bounds, into).view(np.uint8))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is the answer wanted
        if (src, dst) in _THROUGH_F32:
            values = values.astype(np.float32, copy=False)
        out = _f32_to_bf16(values) if dst == "bfloat16" else values.astype(dst)
    rule = _NAN_RULES.get((src, dst))
    if rule is not None and values.size:
        nan = np.isnan(values)
        if nan.any():
            _fix_nans(out, values, nan, rule)
    return memoryview(out.view(np.uint8))


def float_values(data: memoryview | bytes | bytearray, dtype: str) -> Any:
    """The numpy array of `dtype` floats in `data`; bfloat16 comes as the float32s it stands for."""
    import numpy as np

    if dtype == "bfloat16":
        return (np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(data, dtype=dtype)


def _f32_to_bf16(values: Any, bounds: list[int] | None = None, into: bytearray | None = None) -> Any:
    """float32 -> bfloat16 bits, in cache-sized blocks (3x faster than ml_dtypes' element loop):
    round to nearest even by adding 0x7FFF plus the lowest kept bit and keeping the top 16 bits;
    NaNs become 0xFFFF, as torch writes them (`_NAN_RULES`)."""
    import numpy as np

    bits = values.view(np.uint32)
    if into is not None and len(into) >= 2 * bits.size:
        out = np.frombuffer(into, dtype=np.uint16, count=bits.size)
    else:
        out = np.empty(bits.size, dtype=np.uint16)
    block = np.empty(min(bits.size, _BLOCK), dtype=np.uint32)
    low, high = 0xFFFFFFFF, 0
    for at in range(0, bits.size, _BLOCK):
        part = bits[at:at + _BLOCK]
        tmp = block[:part.size]
        np.bitwise_and(part, 0x7FFFFFFF, out=tmp)
        largest = int(tmp.max(initial=0))
        if bounds is not None:
            low, high = min(low, int(tmp.min())), max(high, largest)
        nan = tmp > 0x7F800000 if largest > 0x7F800000 else None
        np.right_shift(part, 16, out=tmp)
        np.bitwise_and(tmp, 1, out=tmp)
        tmp += 0x7FFF
        tmp += part  # wraps only for NaNs, which are replaced below
        tmp >>= 16
        if nan is not None:
            tmp[nan] = 0xFFFF
        out[at:at + part.size] = tmp
    if bounds is not None and bits.size:
        bounds[:] = [low, high]
    return out


def _fix_nans(out: Any, values: Any, nan: Any, rule: tuple[str, int]) -> None:
    import numpy as np

    kind, arg = rule
    bits = out.view(_UINT[out.itemsize])
    if kind == "set":
        bits[nan] = arg
    elif kind == "or":
        bits[nan] |= np.array(arg, dtype=bits.dtype)
    else:  # float32 bits -> float16 NaN
        f32 = values[nan].view(np.uint32)
        bits[nan] = (((f32 >> 16) & 0x8000) | 0x7E00 | ((f32 >> 13) & 0x3FF)).astype(np.uint16)


def tensor_bytes(tensor: Any) -> memoryview:
    """A contiguous torch tensor's bytes, without a copy when it is already contiguous."""
    import torch

    if tensor.is_quantized:  # its stored integers (view(uint8) of a quantized tensor crashes torch)
        tensor = tensor.int_repr()
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")

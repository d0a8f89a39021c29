"""`--dtype` casts are done with numpy alone (no torch, no ml_dtypes) and are bit for bit torch's `.to()`.

Every (src, dst) pair of float64/float32/float16/bfloat16 is compared byte for byte with torch on:
every 16-bit pattern; ±0, ±inf, quiet/signalling NaNs with payloads, subnormals, the largest
finite values and the overflow threshold; values exactly at, just below and just above a rounding
tie at every mantissa position of every exponent (so the destination's subnormal range too), and
the float64 -> 16-bit double-rounding cases; random bit patterns and normal samples at sizes 0, 1,
odd, and around vector widths. Then the same through a real convert with tiny chunks (chunk
boundaries inside tensors), and a fresh process that converts with a cast and never imports torch
(nor ml_dtypes, whose import alone takes ~0.6 s in its version 0.7).

torch's reference is taken on a copy padded to a multiple of 64 elements, single-threaded: for two
pairs (float64 -> bfloat16, float16 -> float32) torch's scalar tail loop (the last n % vector-width
elements, per thread) writes other NaN bits than its vectorised loop; we match the vectorised loop,
which is what almost every element of a tensor gets. `test_unpadded_differs_only_in_nan_bits`
shows that only NaN bits are affected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from core.convert import ConvertOptions, convert, stream  # noqa: E402
from core.convert.stream import cast_bytes  # noqa: E402
from core.convert.transforms import CASTABLE  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TYPES = sorted(CASTABLE)
PAIRS = [(s, d) for s in TYPES for d in TYPES if s != d]
UINT = {"float64": np.uint64, "float32": np.uint32, "float16": np.uint16, "bfloat16": np.uint16}
INT = {8: np.int64, 4: np.int32, 2: np.int16}
# (exponent bits, mantissa bits)
LAYOUT = {"float64": (11, 52), "float32": (8, 23), "float16": (5, 10), "bfloat16": (8, 7)}


# ---- reference ----------------------------------------------------------------------------------
@contextmanager
def one_thread() -> Iterator[None]:
    """torch splits big casts across threads, and each thread's range has its own scalar tail."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_tensor(bits: np.ndarray, dtype: str) -> torch.Tensor:
    """The `dtype` tensor whose elements have these bit patterns."""
    return torch.from_numpy(bits.view(INT[bits.itemsize]).copy()).view(getattr(torch, dtype))


def tensor_bits(tensor: torch.Tensor) -> np.ndarray:
    dtype = str(tensor.dtype).removeprefix("torch.")
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    return tensor.contiguous().view(ints).numpy().view(UINT[dtype])


def torch_cast(bits: np.ndarray, src: str, dst: str, pad: bool = True) -> np.ndarray:
    """torch's `.to(dst)` of the `src` values with these bit patterns, as dst bit patterns."""
    n = bits.size
    if pad:
        bits = np.concatenate([bits, np.zeros(-n % 64, bits.dtype)])
    with one_thread():
        out = to_tensor(bits, src).to(getattr(torch, dst))
    return tensor_bits(out)[:n]


def ours(bits: np.ndarray, src: str, dst: str) -> np.ndarray:
    got = cast_bytes(memoryview(bits.tobytes()), src, dst)
    assert len(got) == bits.size * np.dtype(UINT[dst]).itemsize
    return np.frombuffer(got, UINT[dst])


def describe(bits: np.ndarray, want: np.ndarray, got: np.ndarray) -> str:
    bad = np.flatnonzero(want != got)
    rows = [f"{int(bits[i]):#x}: torch {int(want[i]):#x}, ours {int(got[i]):#x}" for i in bad[:8]]
    return f"{bad.size} of {bits.size} differ: " + "; ".join(rows)


# ---- inputs -------------------------------------------------------------------------------------
def pack(dtype: str, sign: np.ndarray | int, exp: np.ndarray | int, man: np.ndarray | int) -> np.ndarray:
    e_bits, m_bits = LAYOUT[dtype]
    u = UINT[dtype]
    sign, exp, man = (np.asarray(v, dtype=np.uint64) for v in (sign, exp, man))
    word = (sign << np.uint64(e_bits + m_bits)) | (exp << np.uint64(m_bits)) | man
    return word.astype(u)


def special(dtype: str) -> np.ndarray:
    """Zeros, infinities, NaNs with payloads, subnormals, extremes and their neighbours."""
    e_bits, m_bits = LAYOUT[dtype]
    top_exp, top_man = (1 << e_bits) - 1, (1 << m_bits) - 1
    mans = [0, 1, 2, 3, top_man, top_man - 1, 1 << (m_bits - 1), (1 << (m_bits - 1)) + 1,
            (1 << (m_bits - 1)) - 1, top_man >> 1, 0x2AAAAAAAAAAAAAAA & top_man]
    exps = [0, 1, 2, top_exp - 1, top_exp, (1 << (e_bits - 1)) - 1, 1 << (e_bits - 1)]
    out = [pack(dtype, s, e, m) for s in (0, 1) for e in exps for m in mans]
    return np.unique(np.array(out))


def ties(dtype: str) -> np.ndarray:
    """For every exponent and every cut position k in the mantissa: the bits below k equal to half
    an ulp (a tie), one less and one more, above a kept bit that is even or odd."""
    e_bits, m_bits = LAYOUT[dtype]
    top_man = (1 << m_bits) - 1
    exps = np.arange(1 << e_bits, dtype=np.uint64)
    if e_bits == 11:  # float64: every exponent the narrower types can reach, and a few beyond
        exps = np.unique(np.concatenate([np.arange(1023 - 160, 1023 + 160), [0, 1, 2045, 2046, 2047]]))
    mans = set()
    for k in range(1, m_bits + 1):
        half = 1 << (k - 1)
        for kept in (0, 1, 2, 3, top_man >> k):
            base = (kept << k) & top_man
            mans |= {(base | m) & top_man for m in (half, half - 1, half + 1)}
    mans_arr = np.array(sorted(mans), dtype=np.uint64)
    s, e, m = np.meshgrid(np.array([0, 1], np.uint64), exps.astype(np.uint64), mans_arr,
                          indexing="ij")
    return pack(dtype, s.ravel(), e.ravel(), m.ravel())


def double_rounding() -> np.ndarray:
    """float64 values that round to a float32 tie of the 16-bit type (torch rounds twice)."""
    vals = []
    for tie in (1 + 2.0**-11, 1 + 2.0**-8, 1 + 3 * 2.0**-11, 1 + 3 * 2.0**-8, 2.0**-25, 3 * 2.0**-25,
                65520.0, 2.0**-134, 3 * 2.0**-134):
        for delta in (2.0**-40, -(2.0**-40), 2.0**-30):
            vals += [tie * (1 + delta), -tie * (1 + delta)]
    return np.array(vals, np.float64).view(np.uint64)


def every_input(src: str) -> np.ndarray:
    if src in ("float16", "bfloat16"):
        return np.arange(1 << 16, dtype=np.uint16)
    parts = [special(src), ties(src)]
    if src == "float64":
        parts.append(double_rounding())
    return np.concatenate(parts)


def random_inputs(src: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = UINT[src]
    raw = rng.integers(0, np.iinfo(u).max, n, dtype=u, endpoint=True)
    normal = rng.standard_normal(n) * rng.choice([1e-8, 1e-3, 1.0, 1e3, 1e6], n)
    normal_bits = tensor_bits(torch.from_numpy(normal).to(getattr(torch, src)))
    return np.where(rng.random(n) < 0.5, raw, normal_bits).astype(u)


# ---- the cast itself ----------------------------------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_cast_matches_torch_bit_for_bit(src: str, dst: str) -> None:
    bits = every_input(src)
    want, got = torch_cast(bits, src, dst), ours(bits, src, dst)
    assert np.array_equal(want, got), describe(bits, want, got)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1023, 4097, 100_003])
def test_random_values_match_torch(src: str, dst: str, n: int) -> None:
    bits = random_inputs(src, n, seed=n)
    want, got = torch_cast(bits, src, dst), ours(bits, src, dst)
    assert np.array_equal(want, got), describe(bits, want, got)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_unpadded_differs_only_in_nan_bits(src: str, dst: str) -> None:
    """Against torch on the array as it is (its scalar tail included): every non-NaN output is
    identical, and NaN stays NaN."""
    for n in (1, 3, 5, 13, 257):
        bits = random_inputs(src, n, seed=1000 + n)
        want, got = torch_cast(bits, src, dst, pad=False), ours(bits, src, dst)
        dst_np = np.float32 if dst == "bfloat16" else np.dtype(dst)
        if dst == "bfloat16":  # bfloat16 is the top half of a float32
            want_nan = np.isnan((want.astype(np.uint32) << 16).view(np.float32))
            got_nan = np.isnan((got.astype(np.uint32) << 16).view(np.float32))
        else:
            want_nan, got_nan = np.isnan(want.view(dst_np)), np.isnan(got.view(dst_np))
        assert np.array_equal(want_nan, got_nan)
        same = want_nan | (want == got)
        assert same.all(), describe(bits[~same], want[~same], got[~same])


def test_cast_keeps_same_type_and_rejects_others() -> None:
    data = np.arange(5, dtype=np.float32).tobytes()
    assert bytes(cast_bytes(data, "float32", "float32")) == data
    assert len(cast_bytes(b"", "float32", "bfloat16")) == 0
    with pytest.raises(ValueError, match="int64"):
        cast_bytes(data, "int64", "float32")


# ---- through a convert: chunk boundaries inside tensors -----------------------------------------
def special_tensors() -> dict[str, torch.Tensor]:
    """One odd-length tensor per float type (specials + random), and an integer one."""
    out = {f"{src}.special": to_tensor(np.concatenate([special(src), random_inputs(src, 1001, 7)]),
                                       src) for src in TYPES}
    out["int.kept"] = torch.arange(11, dtype=torch.int64)
    return out


@pytest.mark.parametrize("chunk", [6, 1000, 4099, 1 << 20])
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_convert_cast_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              chunk: int, dtype: str) -> None:
    tensors = special_tensors()
    src = tmp_path / "in.safetensors"
    safetensors_torch.save_file(tensors, str(src))
    monkeypatch.setattr(stream, "CHUNK", chunk)
    dst = tmp_path / "out.safetensors"
    result = convert(src, dst, "safetensors", ConvertOptions(dtype=dtype), allow_overflow=True)
    target = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype]
    loaded = safetensors_torch.load_file(str(dst))
    for name, tensor in tensors.items():
        src_dtype = str(tensor.dtype).removeprefix("torch.")
        if src_dtype not in CASTABLE:
            assert torch.equal(loaded[name], tensor)
            continue
        assert loaded[name].dtype == getattr(torch, target)
        bits = tensor_bits(tensor)
        want, got = torch_cast(bits, src_dtype, target), tensor_bits(loaded[name])
        assert np.array_equal(want, got), f"{name}: " + describe(bits, want, got)
        assert (name in result.dtype_changes) == (src_dtype != target)


# ---- no torch -----------------------------------------------------------------------------------
PROBE = """
import json, sys
if sys.argv[4] == "blocked":
    sys.modules["torch"] = None  # any `import torch` now fails, as without torch installed
from core.convert import ConvertOptions, convert
result = convert(sys.argv[1], sys.argv[2], "safetensors", ConvertOptions(dtype=sys.argv[3]),
                 overwrite=True, allow_overflow=True)
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None)
print(json.dumps({"torch": loaded, "ml_dtypes": "ml_dtypes" in sys.modules,
                  "changes": len(result.dtype_changes)}))
"""


@pytest.mark.parametrize("mode", ["normal", "blocked"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_cast_convert_never_imports_torch(tmp_path: Path, dtype: str, mode: str) -> None:
    src = tmp_path / "in.safetensors"
    safetensors_torch.save_file(special_tensors(), str(src))
    dst = tmp_path / "out.safetensors"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(src), str(dst), dtype, mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["torch"] == []
    assert report["ml_dtypes"] is False
    assert report["changes"] == 3  # the three other float types
    assert dst.stat().st_size > 0

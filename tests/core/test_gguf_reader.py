"""GGUF files (llama.cpp) written with gguf.GGUFWriter: open, inspect, stats, diff, convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.convert import convert
from core.convert.transforms import ConvertOptions
from core.diff.structure import diff_files
from core.errors import CheckpointError, CorruptFile
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint
from core.stats import tensor_stats
from core.tensor_io import read_tensor

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
Q = gguf.GGMLQuantizationType
RNG = np.random.default_rng(0)


def q4_k_blocks(rows: int, cols: int) -> np.ndarray:
    """Q4_K bytes (no quantiser in the gguf package): random blocks with sane f16 scales."""
    block, size = gguf.GGML_QUANT_SIZES[Q.Q4_K]
    blocks = RNG.integers(0, 256, size=(rows * cols // block, size), dtype=np.uint8)
    scales = np.array([0.02, 0.001], dtype=np.float16).view(np.uint8)
    blocks[:, :4] = scales  # d, dmin come first in a Q4_K block
    return blocks.reshape(rows, cols // block * size)


def write_gguf(path: Path, scale: float = 1.0) -> dict[str, tuple[np.ndarray, int]]:
    """Tensors {name: (stored array, GGML type)} written into a small llama-like file."""
    f32 = (RNG.standard_normal((4, 32)) * scale).astype(np.float32)
    stored = {
        "token_embd.weight": (f32, Q.F32),
        "blk.0.attn_norm.weight": (np.linspace(-1, 1, 32, dtype=np.float16), Q.F16),
        "blk.0.attn_q.weight": (gguf.quants.quantize(
            (RNG.standard_normal((8, 64)) * scale).astype(np.float32), Q.Q8_0), Q.Q8_0),
        "blk.0.ffn_down.weight": (q4_k_blocks(2, 256), Q.Q4_K),
    }
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_head_count(4)
    writer.add_token_list([f"t{i}" for i in range(40)])
    for name, (array, qtype) in stored.items():
        raw_dtype = None if qtype in (Q.F32, Q.F16) else qtype
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


def expected_values(stored: dict[str, tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
    """What gguf itself gives for each tensor, through its own reader and dequantiser."""
    return {name: gguf.quants.dequantize(array, qtype) if qtype not in (Q.F32, Q.F16) else array
            for name, (array, qtype) in stored.items()}


def test_inspect_lists_every_tensor_with_its_ggml_type(tmp_path):
    path = tmp_path / "tiny.gguf"
    stored = write_gguf(path)
    ckpt = open_checkpoint(path)
    reader = gguf.GGUFReader(str(path))
    assert ckpt.format == "gguf" and ckpt.weights == "model"
    tensors = ckpt.sections["model"].tensors
    assert set(tensors) == {t.name for t in reader.tensors} == set(stored)
    for t in reader.tensors:
        info = tensors[t.name]
        assert info.shape == tuple(reversed(t.shape.tolist()))
        kind = Q(t.tensor_type).name
        assert info.stored_as == ("" if kind in ("F32", "F16") else kind)
    assert tensors["blk.0.attn_norm.weight"].dtype == "float16"
    assert tensors["blk.0.attn_q.weight"].dtype == "float32"
    meta = ckpt.metadata
    assert meta["architecture"] == "llama" and meta["model_name"] == "tiny-llama"
    assert meta["hyperparameters"]["block_count"] == 1
    assert meta["hyperparameters"]["context_length"] == 128
    assert meta["hyperparameters"]["embedding_length"] == 32
    assert meta["kv"]["tokenizer.ggml.tokens"] == "<array of 40 string>"
    assert meta["ggml_types"] == {"F32": 1, "F16": 1, "Q8_0": 1, "Q4_K": 1}
    as_json = inspect_checkpoint(ckpt).to_dict()
    listed = {t["name"]: t for s in as_json["sections"] for t in s["tensors"]}
    assert listed["blk.0.ffn_down.weight"]["stored_as"] == "Q4_K"
    assert listed["blk.0.ffn_down.weight"]["shape"] == [2, 256]


def test_read_matches_gguf_bit_for_bit(tmp_path):
    path = tmp_path / "tiny.gguf"
    expected = expected_values(write_gguf(path))
    ckpt = open_checkpoint(path)
    for name, array in expected.items():
        ours = read_tensor(ckpt.find(name)).numpy()
        assert ours.dtype == array.dtype and ours.shape == array.shape, name
        assert ours.tobytes() == array.tobytes(), name


@pytest.mark.parametrize("dtype", [None, "fp16", "bf16"])
def test_convert_dequantises_exactly(tmp_path, dtype):
    path = tmp_path / "tiny.gguf"
    expected = expected_values(write_gguf(path))
    dest = tmp_path / "out.safetensors"
    convert(path, dest, options=ConvertOptions(dtype=dtype) if dtype else None)
    written = load_file(dest)
    assert set(written) == set(expected)
    for name, array in expected.items():
        want = torch.from_numpy(array.copy())
        if dtype and want.is_floating_point():
            want = want.to(torch.float16 if dtype == "fp16" else torch.bfloat16)
        got = written[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert torch.equal(got.reshape(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8))


def test_stats_and_diff(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    expected = expected_values(write_gguf(a))
    write_gguf(b, scale=2.0)
    stats = tensor_stats(open_checkpoint(a), "blk.0.attn_q.weight")
    assert stats.numel == 8 * 64
    assert stats.max == pytest.approx(float(expected["blk.0.attn_q.weight"].max()))
    same = diff_files(a, a, values=True)
    assert same.value_totals["identical"] == 4
    other = diff_files(a, b, values=True)
    assert other.totals["same"] == 4 and other.value_totals["different"] >= 2


def test_truncated_file_is_one_sentence(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    data = path.read_bytes()
    for cut in (5, 30, 200, len(data) // 2, len(data) - 1):
        cut_path = tmp_path / f"cut{cut}.gguf"
        cut_path.write_bytes(data[:cut])
        with pytest.raises(CorruptFile) as caught:
            open_checkpoint(cut_path)
        assert "GGUF file is" in caught.value.message and "\n" not in caught.value.message


def test_lying_counts_and_offsets_are_one_sentence(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    data = bytearray(path.read_bytes())
    lying = {"tensor count": (8, (1 << 40).to_bytes(8, "little")),
             "kv count": (16, (1 << 40).to_bytes(8, "little")),
             "version": (4, (99).to_bytes(4, "little"))}
    for what, (at, value) in lying.items():
        bad = bytearray(data)
        bad[at:at + len(value)] = value
        bad_path = tmp_path / f"{what}.gguf"
        bad_path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError) as caught:
            open_checkpoint(bad_path)
        assert "GGUF" in caught.value.message, what
        if what == "version":
            assert "version 99, newer than the installed 'gguf' package" in caught.value.message


def test_opening_needs_no_torch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from core.formats import open_checkpoint\n"
            "from core.tensor_io import storage_bytes\n"
            f"c = open_checkpoint({str(path)!r})\n"
            "print(len(c.all_tensors()), len(storage_bytes(c.find('blk.0.attn_q.weight').storage)))\n")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", str(8 * 64 * 4)]


def test_a_file_without_tensors_says_so(tmp_path):
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(["a", "b", "c"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ckpt = open_checkpoint(path)
    assert ckpt.all_tensors() == []
    [finding] = inspect_checkpoint(ckpt).to_dict()["findings"]
    assert finding["kind"] == "no-tensors"
    assert "holds no weights" in finding["message"] and "vocabulary-only" in finding["message"]

"""Precision risks of a cast to float16 / bfloat16: counted per tensor, overflow refused unless allowed."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.convert import ConvertOptions, OverflowRefused, convert
from core.convert.precision import PrecisionCounter, count_chunk, precision_report
from core.formats import open_checkpoint
from core.progress import Recorder


def torch_counts(values: torch.Tensor, dtype: torch.dtype) -> dict[str, float]:
    """What torch's own cast does, counted the slow obvious way."""
    x = values.double().reshape(-1)
    y = values.to(dtype).double().reshape(-1)
    finite_nonzero = torch.isfinite(x) & (x != 0)
    tiny = torch.finfo(dtype).tiny
    kept = finite_nonzero & torch.isfinite(y)
    rel = ((y[kept] - x[kept]).abs() / x[kept].abs())
    return {"overflow": int((torch.isinf(y) & torch.isfinite(x)).sum()),
            "flushed": int(((y == 0) & finite_nonzero).sum()),
            "subnormal": int(((y != 0) & (y.abs() < tiny)).sum()),
            "max_rel_error": float(rel.max()) if rel.numel() else 0.0,
            "mean_rel_error": float(rel.mean()) if rel.numel() else 0.0}


def risky(n: int = 5000, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random values plus every kind of edge: overflow, flush, subnormal, zero, NaN, +-inf."""
    gen = torch.Generator().manual_seed(7)
    values = torch.randn(n, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -9, 6, (n,), generator=gen).double()
    values[:8] = torch.tensor([1e5, -7e4, 65519.0, 65520.0, 1e-9, 3e-6, 0.0, -0.0], dtype=torch.float64)
    values[8:11] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    return values.to(dtype)


@pytest.mark.parametrize("src", [torch.float32, torch.float64, torch.bfloat16])
def test_fp16_counts_match_torch(tmp_path, src):
    w = risky(dtype=src)
    save_file({"w": w}, tmp_path / "m.safetensors")
    report = precision_report(open_checkpoint(tmp_path / "m.safetensors"), "fp16")
    [row] = report.tensors
    want = torch_counts(w, torch.float16)
    assert (row.overflow, row.flushed, row.subnormal) == (want["overflow"], want["flushed"],
                                                          want["subnormal"])
    assert row.overflow >= 1 and row.flushed >= 1 and row.subnormal >= 1
    assert row.max_rel_error == pytest.approx(want["max_rel_error"], rel=1e-6)
    assert row.mean_rel_error == pytest.approx(want["mean_rel_error"], rel=1e-4)
    assert row.max_abs == pytest.approx(float(w[torch.isfinite(w)].double().abs().max()))
    assert report.overflowing == ["w"] and report.overflow == row.overflow


def test_bf16_counts_match_torch_and_overflow_near_float32_max(tmp_path):
    w = risky()
    w[11:15] = torch.tensor([3.4e38, -3.397e38, 3.39e38, 1e-40])  # 2 round above bf16's max; subnormal
    save_file({"w": w, "h": torch.full((4,), 2.0 ** -20, dtype=torch.float16)}, tmp_path / "m.safetensors")
    report = precision_report(open_checkpoint(tmp_path / "m.safetensors"), "bf16")
    rows = {t.name: t for t in report.tensors}
    want = torch_counts(w, torch.bfloat16)
    assert (rows["w"].overflow, rows["w"].flushed, rows["w"].subnormal) == (
        want["overflow"], want["flushed"], want["subnormal"])
    assert rows["w"].overflow == 2 and rows["w"].subnormal >= 1  # 3.4e38 and -3.397e38
    assert rows["w"].max_rel_error == pytest.approx(want["max_rel_error"], rel=1e-6)
    assert rows["h"].overflow == rows["h"].flushed == rows["h"].subnormal == 0  # fp16 fits bf16
    assert report.dtype == "bfloat16" and report.max_finite == pytest.approx(3.3895e38, rel=1e-4)


def test_chunks_add_up_to_the_whole():
    """Counting a tensor in many small chunks gives the counts of one big chunk, with and without
    the bounds the float32 -> bfloat16 cast hands over."""
    import numpy as np

    from core.convert.cast import cast_bytes
    from core.convert.precision import EXACT, FORMATS, TensorPrecision

    values = risky(EXACT - 5).numpy()
    for dst in ("float16", "bfloat16"):
        whole, parts = (TensorPrecision("w", "float32", values.size) for _ in range(2))
        bits = np.frombuffer(cast_bytes(values.tobytes(), "float32", dst), dtype=np.uint16)
        count_chunk(whole, values, bits, FORMATS[dst])
        for at in range(0, values.size, 999):
            bounds: list[int] = []
            part = cast_bytes(values[at:at + 999].tobytes(), "float32", dst, bounds)
            assert bytes(part) == bits[at:at + 999].tobytes()
            count_chunk(parts, values[at:at + 999], bits[at:at + 999], FORMATS[dst], bounds)
        assert (parts.overflow, parts.flushed, parts.subnormal, parts.rel_error_count) == (
            whole.overflow, whole.flushed, whole.subnormal, whole.rel_error_count)
        assert parts.max_rel_error == whole.max_rel_error and parts.max_abs == whole.max_abs
        assert parts.mean_rel_error == pytest.approx(whole.mean_rel_error, rel=1e-6)  # float32 sums


@pytest.mark.parametrize("dst", [torch.float16, torch.bfloat16])
def test_big_tensors_sample_the_mean_error(tmp_path, dst):
    """Above EXACT values per chunk the mean comes from a sample: close to the exact one, and the
    max never exceeds the exact max."""
    w = torch.randn(300_000, generator=torch.Generator().manual_seed(3))
    save_file({"w": w}, tmp_path / "m.safetensors")
    [row] = precision_report(open_checkpoint(tmp_path / "m.safetensors"),
                             "fp16" if dst == torch.float16 else "bf16").tensors
    want = torch_counts(w, dst)
    assert row.mean_rel_error == pytest.approx(want["mean_rel_error"], rel=0.05)
    assert 0.9 * want["max_rel_error"] <= row.max_rel_error <= want["max_rel_error"]
    assert row.overflow == row.flushed == 0 and row.max_abs == pytest.approx(float(w.abs().max()))


def test_only_cast_tensors_under_output_names(tmp_path):
    save_file({"model.a": torch.randn(8), "model.n": torch.arange(4), "model.h": torch.randn(4).half()},
              tmp_path / "m.safetensors")
    report = precision_report(open_checkpoint(tmp_path / "m.safetensors"), "fp16",
                              ConvertOptions(strip_prefix=("model.",), dtype="bf16"))
    assert [t.name for t in report.tensors] == ["a"]  # ints are never cast, fp16 is already fp16
    assert report.to_dict()["totals"]["numel"] == 8
    assert precision_report(open_checkpoint(tmp_path / "m.safetensors"), "fp32").tensors == []


def test_report_reports_progress_and_cancels(tmp_path):
    save_file({f"w{i}": torch.randn(1000) for i in range(5)}, tmp_path / "m.safetensors")
    ck = open_checkpoint(tmp_path / "m.safetensors")
    recorder = Recorder()
    precision_report(ck, "fp16", progress=recorder)
    assert recorder.updates[-1][0] == recorder.updates[-1][1] == 5 * 1000 * 2
    from core.errors import Cancelled

    with pytest.raises(Cancelled):
        precision_report(ck, "fp16", progress=Recorder(cancel_after=2))


def one_big_value(tmp_path, dtype=torch.float32):
    w = torch.randn(32, 32, dtype=dtype)
    w[3, 4] = 1e5
    src = tmp_path / "src.safetensors"
    save_file({"encoder.weight": w, "encoder.bias": torch.randn(32, dtype=dtype),
               "decoder.weight": torch.randn(16, 32, dtype=dtype) * 1e5}, src)
    return src


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded", "pt"])
def test_overflowing_cast_is_refused_and_writes_nothing(tmp_path, target):
    src = one_big_value(tmp_path)
    out_dir = tmp_path / "new" / "out"
    dest = out_dir / ("m.pt" if target == "pt" else "m" if target.endswith("sharded") else "m.safetensors")
    with pytest.raises(OverflowRefused) as caught:
        convert(src, dest, target, ConvertOptions(dtype="fp16"), create_folders=True,
                max_shard_size=2000 if target.endswith("sharded") else None)
    assert "'encoder.weight' (1 value, largest 1e+05)" in caught.value.message
    assert "'decoder.weight'" in caught.value.message and "'encoder.bias'" not in caught.value.message
    assert sorted(caught.value.tensors) == ["decoder.weight", "encoder.weight"]
    assert "--allow-overflow" in caught.value.message
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["src.safetensors"]  # no temp, no folder


def test_allowed_overflow_is_written_and_counted(tmp_path):
    src = one_big_value(tmp_path)
    result = convert(src, tmp_path / "out.safetensors", "safetensors", ConvertOptions(dtype="fp16"),
                     allow_overflow=True)
    written = load_file(tmp_path / "out.safetensors")
    expected = load_file(src)
    infinities = sum(int(torch.isinf(t).sum()) for t in written.values())
    assert infinities == sum(int(torch.isinf(t.half()).sum()) for t in expected.values())
    assert result.precision["totals"]["overflow"] == infinities > 1
    rows = {r["name"]: r for r in result.precision["tensors"]}
    assert rows["encoder.weight"]["overflow"] == 1 and rows["encoder.bias"]["overflow"] == 0
    assert any("became infinity" in n and "encoder.weight" in n for n in result.notes)
    json.dumps(result.to_dict())  # the CLI's --json prints it


def test_bf16_cast_of_the_same_file_is_fine(tmp_path):
    src = one_big_value(tmp_path)
    result = convert(src, tmp_path / "out.safetensors", "safetensors", ConvertOptions(dtype="bf16"))
    assert result.precision["dtype"] == "bfloat16" and result.precision["totals"]["overflow"] == 0
    assert 0 < result.precision["totals"]["max_rel_error"] <= 2.0 ** -8


def test_no_report_without_a_16_bit_cast(tmp_path):
    src = one_big_value(tmp_path, torch.float16)
    assert convert(src, tmp_path / "a.safetensors").precision is None
    assert convert(src, tmp_path / "b.safetensors", options=ConvertOptions(dtype="fp32")).precision is None


def test_counter_refuses_on_the_first_overflowing_chunk():
    from core.convert.precision import OverflowFound
    from core.convert.transforms import Item
    from core.model import TensorInfo

    item = Item("w", TensorInfo(name="w", dtype="float32", shape=(2,)), "float16")
    counter = PrecisionCounter("float16", allow_overflow=False)
    fine = torch.tensor([1.0, 2.0])
    counter.add(item, fine.numpy().tobytes(), fine.half().numpy().tobytes())
    with pytest.raises(OverflowFound):
        counter.add(item, torch.tensor([1e5, 2.0]).numpy().tobytes(),
                    torch.tensor([1e5, 2.0]).half().numpy().tobytes())


def test_views_read_through_torch_are_counted_too(tmp_path):
    """A transposed view goes through torch's cast; its counts are the same as a plain tensor's."""
    w = risky(4096).reshape(64, 64)
    torch.save({"t": w.t(), "plain": w.t().contiguous()}, tmp_path / "m.pt")
    result = convert(tmp_path / "m.pt", tmp_path / "out.safetensors", options=ConvertOptions(dtype="fp16"),
                     allow_overflow=True)
    rows = {r["name"]: r for r in result.precision["tensors"]}
    want = torch_counts(w, torch.float16)
    for name in ("t", "plain"):
        assert (rows[name]["overflow"], rows[name]["flushed"], rows[name]["subnormal"]) == (
            want["overflow"], want["flushed"], want["subnormal"])
        assert rows[name]["max_rel_error"] == pytest.approx(want["max_rel_error"], rel=1e-6)


@pytest.mark.parametrize("cancel_after", [1, 3, 5])
def test_cancel_during_a_pipelined_cast_leaves_nothing(tmp_path, monkeypatch, cancel_after):
    """Casts run one chunk ahead in a worker thread; a cancel stops both, and nothing is left."""
    import threading

    from core.convert import stream
    from core.errors import Cancelled

    monkeypatch.setattr(stream, "CAST_CHUNK", 4096)
    src = tmp_path / "src.safetensors"
    save_file({f"w{i}": torch.randn(4096) for i in range(4)}, src)
    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        convert(src, out / "o.safetensors", options=ConvertOptions(dtype="bf16"), create_folders=True,
                progress=Recorder(cancel_after=cancel_after))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]
    assert not any(t.name.startswith(("cast", "source-hash")) and t.is_alive()
                   for t in threading.enumerate())
    result = convert(src, out / "o.safetensors", options=ConvertOptions(dtype="bf16"), create_folders=True)
    written = load_file(out / "o.safetensors")
    assert all(torch.equal(written[k], v.bfloat16()) for k, v in load_file(src).items())
    assert result.precision["totals"]["numel"] == 4 * 4096


def test_bf16_overflow_is_refused_too(tmp_path):
    src = tmp_path / "src.safetensors"
    save_file({"huge": torch.tensor([1.0, 3.4e38]), "fine": torch.ones(3)}, src)
    with pytest.raises(OverflowRefused) as caught:
        convert(src, tmp_path / "o.safetensors", options=ConvertOptions(dtype="bf16"))
    assert caught.value.tensors == ["huge"] and "keep float32" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]

"""core.stats: tensor statistics match torch, in chunks, for every dtype; cancel stops the job."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core import stats as stats_mod
from core.errors import Cancelled, CheckpointError
from core.formats import open_checkpoint
from core.progress import Recorder
from core.stats import tensor_stats
from tests.fixtures.models import FixtureFiles, dtype_zoo


def _save(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "t.pt"
    torch.save(tensors, path)
    return path


def test_float_stats_match_torch(files: FixtureFiles) -> None:
    ckpt = open_checkpoint(files["state_dict"])
    expected = torch.load(files["state_dict"], weights_only=True)["conv.weight"].double()
    result = tensor_stats(ckpt, "conv.weight")
    assert result.numel == expected.numel() == result.finite
    assert result.min == pytest.approx(expected.min().item())
    assert result.max == pytest.approx(expected.max().item())
    assert result.mean == pytest.approx(expected.mean().item())
    assert result.std == pytest.approx(expected.std().item())
    assert sum(result.hist_counts) == expected.numel()
    assert len(result.hist_edges) == len(result.hist_counts) + 1 == 65
    assert result.hist_edges[0] == pytest.approx(result.min)
    assert result.hist_edges[-1] == pytest.approx(result.max)
    assert result.to_dict()["histogram"]["counts"] == result.hist_counts


@pytest.mark.parametrize("name", ["f16", "bf16", "f64", "i8", "u8", "i64", "b", "transposed",
                                  "row_view", "scalar"])
def test_every_dtype_and_view(files: FixtureFiles, name: str) -> None:
    expected = dtype_zoo()[name]
    result = tensor_stats(open_checkpoint(files["dtypes"]), name)
    as_float = expected.double()
    assert result.min == pytest.approx(as_float.min().item())
    assert result.max == pytest.approx(as_float.max().item())
    assert result.mean == pytest.approx(as_float.mean().item())
    assert result.zeros == int((as_float == 0).sum())
    assert sum(result.hist_counts) == expected.numel()


def test_integer_histogram_has_one_bin_per_value(files: FixtureFiles) -> None:
    result = tensor_stats(open_checkpoint(files["dtypes"]), "b")  # [True, False, True]
    assert result.hist_counts == [1, 2]
    assert result.hist_edges == [-0.5, 0.5, 1.5]


def test_empty_tensor(files: FixtureFiles) -> None:
    result = tensor_stats(open_checkpoint(files["dtypes"]), "empty")
    assert result.numel == 0 and result.min is None and result.std is None
    assert result.hist_counts == []


def test_nan_inf_are_counted_and_left_out_of_moments(tmp_path: Path) -> None:
    values = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0, 3.0, float("nan")])
    result = tensor_stats(open_checkpoint(_save(tmp_path, {"x": values})), "x")
    assert (result.nan, result.posinf, result.neginf, result.inf) == (2, 1, 1, 2)
    assert result.finite == 3 and result.zeros == 1
    assert (result.min, result.max, result.mean) == (0.0, 3.0, pytest.approx(4 / 3))
    assert sum(result.hist_counts) == 3


def test_chunks_combine_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_mod, "CHUNK", 7)
    torch.manual_seed(0)
    values = torch.randn(1000).bfloat16() * 50 + 1000
    result = tensor_stats(open_checkpoint(_save(tmp_path, {"x": values})), "x")
    ref = values.double()
    assert result.mean == pytest.approx(ref.mean().item(), rel=1e-12)
    assert result.std == pytest.approx(ref.std().item(), rel=1e-9)
    assert sum(result.hist_counts) == 1000


def test_constant_tensor_gets_one_bin(tmp_path: Path) -> None:
    result = tensor_stats(open_checkpoint(_save(tmp_path, {"x": torch.full((5,), 2.0)})), "x")
    assert result.hist_counts == [5] and result.std == 0.0
    assert not any(math.isnan(e) for e in result.hist_edges)


def test_progress_and_cancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_mod, "CHUNK", 10)
    ckpt = open_checkpoint(_save(tmp_path, {"x": torch.randn(100)}))
    recorder = Recorder()
    tensor_stats(ckpt, "x", progress=recorder)
    assert recorder.updates[-1][0] == recorder.updates[-1][1]
    with pytest.raises(Cancelled):
        tensor_stats(ckpt, "x", progress=Recorder(cancel_after=3))


def test_section_and_unknown_name(files: FixtureFiles) -> None:
    ckpt = open_checkpoint(files["ema"])
    assert tensor_stats(ckpt, "fc.bias", section="ema").numel == 8
    with pytest.raises(CheckpointError):
        tensor_stats(ckpt, "nope")

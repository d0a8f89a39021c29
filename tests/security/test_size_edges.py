"""Sizes at the edge of what torch holds: refused where torch refuses, or where no output could
hold the tensor; read exactly like torch where it loads them. Never an internal error."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from core.cli.main import main as cli_main
from core.convert import convert
from core.errors import CheckpointError
from core.formats import open_checkpoint
from tests.security.test_parser_differentials import Rebuild, storage, zip_file

BIG = 2**63


def _file(tmp: Path, name: str, size: tuple, stride: tuple) -> Path:
    args = (storage(), 0, size, stride, False, OrderedDict())
    return zip_file(tmp, name, {"x": Rebuild(torch._utils._rebuild_tensor_v2, *args)})


@pytest.mark.parametrize(("size", "stride"), [
    ((BIG,), (0,)),  # a dimension past int64
    ((0, BIG), (1, 1)),  # ... even with no elements
    ((2**62, 4), (0, 0)),  # elements past int64
    ((2**62, 8, 0), (0, 0, 0)),  # overflowing before a 0 dimension, as torch checks it
])
def test_sizes_torch_refuses_are_refused(tmp_path: Path, size: tuple, stride: tuple,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "edge", size, stride)
    with pytest.raises(Exception):  # noqa: B017 - control: torch refuses the file
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    assert caught.value.message.endswith(".")
    assert cli_main(["inspect", str(path)]) == 2 and "Traceback" not in capsys.readouterr().err


def test_repeated_values_beyond_any_file_are_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "huge_view", (BIG - 1,), (0,))
    assert torch.load(path, weights_only=True)["x"].shape == (BIG - 1,)  # control: a view to torch
    with pytest.raises(CheckpointError, match="more than 8 exabytes"):
        open_checkpoint(path)
    out = tmp_path / "out.safetensors"
    assert cli_main(["convert", str(path), str(out)]) == 2
    err = capsys.readouterr().err
    assert "exabytes" in err and "Traceback" not in err and not out.exists()


def test_empty_tensor_with_the_largest_dimension_converts_readably(tmp_path: Path) -> None:
    path = _file(tmp_path, "empty_big", (0, BIG - 1), (1, 1))
    ref = torch.load(path, weights_only=True)["x"]
    assert open_checkpoint(path).read("x").shape == ref.shape
    out = tmp_path / "out.safetensors"
    convert(path, out)
    with safe_open(out, "pt") as f:
        assert f.get_tensor("x").shape == ref.shape


@pytest.mark.parametrize("count", [10**9, 2**40, 2**61])
def test_repeated_values_convert_to_a_plain_refusal(tmp_path: Path, count: int,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Stride 0 over 10^9 ... 2^61 floats: torch loads a view of 16 bytes; converting would write
    it out in full (4 GB ... 8 EB), so convert refuses plainly (exit 2, was exit 3) and writes
    nothing. Opening keeps the view (refused only past 8 exabytes)."""
    path = _file(tmp_path, "repeated", (count,), (0,))
    ref = torch.load(path, weights_only=True)["x"]
    assert ref.shape == (count,) and ref.stride() == (0,)  # control: a view to torch
    if count * 4 < 2**63:
        view = open_checkpoint(path).read("x")
        assert view.shape == ref.shape and torch.equal(view[:4], ref[:4])
    out = tmp_path / "out.safetensors"
    assert cli_main(["convert", str(path), str(out)]) == 2
    err = capsys.readouterr().err
    assert ("written out in full" in err or "exabytes" in err) and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))

"""Hostile and damaged quantized tensors (torch._utils._rebuild_qtensor): the builder only records
its arguments, a payload in the quantizer parameters or hooks never runs, a damaged quantizer is
one plain error where torch refuses it, and the old list form of per-channel parameters reads."""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from core.cli.main import EXIT_OK, main
from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import open_checkpoint
from core.formats.pickle_ops import QScheme
from core.formats.pickle_vm import load as vm_load
from core.tensor_io import read_tensor
from tests.core.test_quantized import assert_same_qtensor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

class _Call:
    """Pickles as "call func(*args)"; never called here."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _qstorage() -> torch.storage.TypedStorage:
    q = torch.quantize_per_tensor(torch.arange(6.0), 1.0, 0, torch.qint8)
    return torch.storage.TypedStorage(wrap_storage=q.untyped_storage(), dtype=torch.qint8,
                                      _internal=True)


def _qtensor_file(tmp_path: Path, name: str, params: Any, *, storage: Any = None,
                  size: tuple[int, ...] = (2, 3), hooks: Any = None) -> Path:
    """A torch.save zip whose entry 'w' is _rebuild_qtensor(storage, 0, size, ..., params, ...)."""
    stride = (size[1], 1) if len(size) == 2 else (1,)
    call = _Call(torch._utils._rebuild_qtensor, _qstorage() if storage is None else storage, 0,
                 size, stride, params, False, OrderedDict() if hooks is None else hooks)
    path = tmp_path / f"{name}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"w": call, "plain": torch.ones(2)}, path)
    return path


def _system(marker: Path) -> _Call:
    return _Call(os.system, f"touch '{marker}'")


def test_control_a_hand_built_qtensor_file_loads_in_torch(tmp_path: Path) -> None:
    path = _qtensor_file(tmp_path, "ok", (torch.per_tensor_affine, 0.5, 2))
    want = torch.load(path, weights_only=True)["w"]
    ckpt = open_checkpoint(path)
    assert ckpt.findings == []
    assert_same_qtensor(ckpt.read("w"), want)


@pytest.mark.parametrize("where", ["scale", "zero_point", "qscheme_call", "storage",
                                   "per_channel_scales"])
def test_payload_in_qtensor_arguments_never_runs(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    payload = _system(marker)
    params: Any = (torch.per_tensor_affine, 0.5, 0)
    storage = None
    if where == "scale":
        params = (torch.per_tensor_affine, payload, 0)
    elif where == "zero_point":
        params = (torch.per_tensor_affine, 0.5, payload)
    elif where == "qscheme_call":
        params = (payload, 0.5, 0)
    elif where == "storage":
        storage = payload
    else:
        params = (torch.per_channel_affine, payload, torch.zeros(2, dtype=torch.long), 0)
    path = _qtensor_file(tmp_path, where, params, storage=storage)
    with pytest.raises(UnsafeContent) as err:
        open_checkpoint(path)
    assert "os.system" in err.value.message or "posix.system" in err.value.message
    assert any(f.severity == "dangerous" and f.name.endswith(".system")
               for f in err.value.findings)
    assert main(["scan", str(path)]) != EXIT_OK
    assert not marker.exists()


def test_payload_in_qtensor_hooks_is_reported_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PAYLOAD_RAN"
    path = _qtensor_file(tmp_path, "hooks", (torch.per_tensor_affine, 0.5, 0),
                         hooks=_system(marker))
    ckpt = open_checkpoint(path)
    assert any(f.severity == "dangerous" and f.name.endswith(".system") for f in ckpt.findings)
    assert ckpt.find("w").dtype == "qint8"
    assert not marker.exists()


def test_qscheme_global_is_a_constant_never_called(tmp_path: Path) -> None:
    """A qscheme is a value: calling one (REDUCE on torch.per_tensor_affine) is refused."""
    data = (b"\x80\x02ctorch\nper_tensor_affine\nq\x00)R.")
    with pytest.raises(CorruptFile):
        vm_load(data, where="t")
    assert vm_load(b"\x80\x02ctorch\nper_channel_affine\n.", where="t").value == \
        QScheme("per_channel_affine")
    lookalike = vm_load(b"\x80\x02ctorch\nper_tensor_affine_x\n.", where="t")
    assert [f.name for f in lookalike.findings] == ["torch.per_tensor_affine_x"]


@pytest.mark.parametrize("case", ["symmetric", "axis_out_of_range", "too_few_scales",
                                  "storage_too_small", "float_storage", "scale_is_text",
                                  "mixed_list_and_tensor"])
def test_damaged_quantizer_is_a_plain_error_where_torch_refuses(tmp_path: Path, case: str) -> None:
    zeros = torch.zeros(2, dtype=torch.long)
    kwargs: dict[str, Any] = {}
    params: Any = {
        "symmetric": (torch.per_tensor_symmetric, 0.5, 0),
        "axis_out_of_range": (torch.per_channel_affine, torch.ones(2, dtype=torch.double),
                              zeros, 2),
        "too_few_scales": (torch.per_channel_affine, torch.ones(1, dtype=torch.double), zeros, 0),
        "scale_is_text": (torch.per_tensor_affine, "0.5", 0),
        "mixed_list_and_tensor": (torch.per_channel_affine, [1.0, 1.0], zeros, 0),
    }.get(case, (torch.per_tensor_affine, 0.5, 0))
    if case == "storage_too_small":
        kwargs["size"] = (3, 3)
    if case == "float_storage":
        kwargs["storage"] = torch.ones(6).storage()
    path = _qtensor_file(tmp_path, case, params, **kwargs)
    with pytest.raises(Exception):  # noqa: B017 - torch refuses it one way or another
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError) as err:
        ckpt = open_checkpoint(path)
        ckpt.read("w")
    assert err.value.message.endswith(".") and "damaged" in err.value.message


def test_old_list_form_of_per_channel_parameters(tmp_path: Path) -> None:
    """Files from old torch versions hold per-channel scales/zero points as lists."""
    path = _qtensor_file(tmp_path, "lists", (torch.per_channel_affine, [0.5, 0.25], [0, 3], 0))
    want = torch.load(path, weights_only=True)["w"]
    info = open_checkpoint(path).find("w")
    assert info.quantization.scales == (0.5, 0.25) and info.quantization.zero_points == (0, 3)
    assert info.quantization.to_dict()["scales_dtype"] == "float64"
    assert_same_qtensor(read_tensor(info), want)



"""Quantized tensors (torch._utils._rebuild_qtensor): opened as tensors, read as torch.load reads them.

Fixtures are built here: tiny per-tensor / per-channel quantized tensors of every quantized dtype,
views of them, a `quantize_dynamic`'d and a statically quantized model's state_dict, the same in
the legacy format and inside a TorchScript archive. Hostile variants (a payload in the quantizer
parameters never runs): test_quantized_hostile.py.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from core.cli.main import EXIT_ERROR, EXIT_OK, main
from core.formats import open_checkpoint
from core.model import Checkpoint, Quantization, TensorInfo
from core.scan import scan_checkpoint
from core.tensor_io import read_dequantized, read_tensor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen)
    out = {
        "pt_qint8": torch.quantize_per_tensor(x, 0.02, 0, torch.qint8),
        "pt_quint8": torch.quantize_per_tensor(x, 0.05, 128, torch.quint8),
        "pt_qint32": torch.quantize_per_tensor(x, 0.001, 3, torch.qint32),
        "pt_quint4x2": torch.quantize_per_tensor(torch.rand(4, 6, generator=gen), 0.1, 1,
                                                 torch.quint4x2),
        "pc_qint8": torch.quantize_per_channel(x, torch.rand(4, generator=gen) * 0.1 + 0.01,
                                               torch.zeros(4, dtype=torch.long), 0, torch.qint8),
        "pc_quint8_axis1": torch.quantize_per_channel(x, torch.rand(6, generator=gen) * 0.1 + 0.01,
                                                      torch.arange(6), 1, torch.quint8),
        # float zero points, as quantized embeddings store them (built from set values: an
        # unconverted quantized Embedding's weight() reads uninitialized memory, NaN at times)
        "float_qparams": torch.quantize_per_channel(torch.randn(5, 4, generator=gen),
                                                    torch.rand(5, generator=gen) * 0.1 + 0.01,
                                                    torch.randn(5, generator=gen) * 0.1, 0,
                                                    torch.quint8),
        "plain": x,
    }
    out["view_t"] = out["pt_qint8"].t()
    out["row_slice"] = out["pt_quint8"][1:3]
    return out


def _dynamic_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


class _Static(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.conv, self.fc = nn.Conv2d(2, 3, 3), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.fc(self.conv(self.quant(x)).flatten(1)))


def _static_model() -> nn.Module:
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    torch.manual_seed(0)
    model = _Static().eval()
    model.qconfig = get_default_qconfig("fbgemm")
    prepared = prepare(model)
    prepared(torch.randn(2, 2, 4, 4))
    return convert(prepared)


@pytest.fixture(scope="module")
def qfiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("quantized")
    paths = {name: folder / f"{name}.pt" for name in
             ("tensors", "tensors_legacy", "dynamic", "static", "static_legacy", "script")}
    torch.save(_tensors(), paths["tensors"])
    torch.save(_tensors(), paths["tensors_legacy"], _use_new_zipfile_serialization=False)
    torch.save(_dynamic_model().state_dict(), paths["dynamic"])
    torch.save(_static_model().state_dict(), paths["static"])
    torch.save(_static_model().state_dict(), paths["static_legacy"],
               _use_new_zipfile_serialization=False)
    torch.jit.script(_dynamic_model()).save(str(paths["script"]))
    return paths


def _lookup(tree: Any, name: str) -> torch.Tensor:
    """A state_dict entry by our flattened name ("fc._packed_params._packed_params.0")."""
    if name in tree:
        return tree[name]
    key, _, index = name.rpartition(".")
    return tree[key][int(index)]


def assert_same_qtensor(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.stride() == want.stride() and got.storage_offset() == want.storage_offset()
    assert got.is_quantized == want.is_quantized
    if not want.is_quantized:
        assert torch.equal(got, want)
        return
    assert got.qscheme() == want.qscheme()
    assert torch.equal(got.int_repr(), want.int_repr())
    assert torch.equal(got.dequantize(), want.dequantize())
    if want.qscheme() == torch.per_tensor_affine:
        assert (got.q_scale(), got.q_zero_point()) == (want.q_scale(), want.q_zero_point())
    else:
        assert got.q_per_channel_axis() == want.q_per_channel_axis()
        for a, b in ((got.q_per_channel_scales(), want.q_per_channel_scales()),
                     (got.q_per_channel_zero_points(), want.q_per_channel_zero_points())):
            assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("key", ["tensors", "tensors_legacy", "dynamic", "static", "static_legacy"])
def test_quantized_tensors_read_as_torch_load_reads_them(qfiles, key: str) -> None:
    ckpt = open_checkpoint(qfiles[key])
    assert ckpt.findings == []
    want = torch.load(qfiles[key], weights_only=True)
    quantized = 0
    for info in ckpt.all_tensors():
        assert_same_qtensor(read_tensor(info), _lookup(want, info.name))
        quantized += info.quantization is not None
    assert quantized >= 2


def test_metadata_of_each_quantized_kind(qfiles) -> None:
    tensors = open_checkpoint(qfiles["tensors"]).sections["model"].tensors
    assert {n: t.dtype for n, t in tensors.items()} == {
        "pt_qint8": "qint8", "pt_quint8": "quint8", "pt_qint32": "qint32",
        "pt_quint4x2": "quint4x2", "pc_qint8": "qint8", "pc_quint8_axis1": "quint8",
        "float_qparams": "quint8", "plain": "float32", "view_t": "qint8", "row_slice": "quint8"}
    assert tensors["plain"].quantization is None
    assert tensors["pt_quint8"].quantization == Quantization("per_tensor_affine", scale=0.05,
                                                             zero_point=128)
    assert tensors["pt_qint32"].nbytes == 4 * 24  # torch's nbytes: element_size() per element
    assert tensors["pt_quint4x2"].storage.nbytes == 12  # two 4-bit values per stored byte
    channel = tensors["pc_quint8_axis1"].quantization
    assert channel.scheme == "per_channel_affine" and channel.axis == 1 and channel.channels == 6
    assert isinstance(channel.scales, TensorInfo) and channel.scales.dtype == "float64"
    assert isinstance(channel.zero_points, TensorInfo) and channel.zero_points.dtype == "int64"
    # torch.save writes float-qparams tensors as per_channel_affine; torch.load (and we) say:
    assert tensors["float_qparams"].quantization.scheme == "per_channel_affine_float_qparams"
    view = tensors["view_t"]
    assert (view.shape, view.stride, view.storage is tensors["pt_qint8"].storage) == (
        (6, 4), (1, 6), True)
    assert tensors["row_slice"].storage_offset == 6
    assert tensors["pt_qint8"].quantization.describe() == \
        "per-tensor affine, scale 0.02, zero point 0"
    assert tensors["pc_qint8"].quantization.describe() == "per-channel affine, axis 0, 4 channels"
    assert tensors["pt_qint8"].to_dict()["quantization"] == {
        "scheme": "per_tensor_affine", "scale": 0.02, "zero_point": 0}
    assert "quantization" not in tensors["plain"].to_dict()


def test_dequantized_values_match_torch(qfiles) -> None:
    ckpt = open_checkpoint(qfiles["tensors"])
    want = torch.load(qfiles["tensors"], weights_only=True)
    for name in ("pt_qint8", "pc_quint8_axis1", "float_qparams", "plain"):
        got = read_dequantized(ckpt.find(name))
        assert not got.is_quantized
        assert torch.equal(got, want[name].dequantize() if want[name].is_quantized else want[name])


def test_dynamic_model_state_dict_has_no_unknown_globals(qfiles) -> None:
    ckpt = open_checkpoint(qfiles["dynamic"])
    result = scan_checkpoint(ckpt)
    assert result.findings == [] and not result.refused_by_weights_only
    tensors = ckpt.sections[ckpt.weights].tensors
    weight = tensors["0._packed_params._packed_params.0"]  # LinearPackedParams: (weight, bias)
    assert weight.dtype == "qint8" and weight.shape == (5, 6)
    assert weight.quantization.scheme == "per_tensor_affine"
    assert tensors["0._packed_params._packed_params.1"].dtype == "float32"
    assert ckpt.sections[ckpt.weights].values["0._packed_params.dtype"] == "torch.qint8"
    # the tensors read back load into another quantized model, which then computes the same
    state = torch.load(qfiles["dynamic"], weights_only=True)  # keeps its _metadata (versions)
    for key in ("0._packed_params._packed_params", "2._packed_params._packed_params"):
        state[key] = (ckpt.read(f"{key}.0"), ckpt.read(f"{key}.1"))
    model = _dynamic_model(seed=1)
    x = torch.randn(2, 6)
    assert not torch.equal(model(x), _dynamic_model()(x))
    model.load_state_dict(state)
    assert torch.equal(model(x), _dynamic_model()(x))


def test_static_model_per_channel_weights(qfiles) -> None:
    ckpt = open_checkpoint(qfiles["static"])
    conv = ckpt.find("conv.weight")
    assert conv.dtype == "qint8" and conv.quantization.scheme == "per_channel_affine"
    assert conv.quantization.axis == 0 and conv.quantization.channels == 3
    assert "conv.weight.scales" not in ckpt.sections[ckpt.weights].tensors  # no stray entries
    assert set(ckpt.sections[ckpt.weights].tensors) == {
        *(k for k, v in torch.load(qfiles["static"], weights_only=True).items()
          if isinstance(v, torch.Tensor)),
        "fc._packed_params._packed_params.0", "fc._packed_params._packed_params.1"}


def test_torchscript_packed_params_expose_weight_and_bias(qfiles) -> None:
    ckpt = open_checkpoint(qfiles["script"])
    assert ckpt.findings == []
    model = _dynamic_model()
    for index in ("0", "2"):
        weight, bias = getattr(model, index)._packed_params._weight_bias()
        assert_same_qtensor(ckpt.read(f"{index}._packed_params._packed_params.0"), weight)
        assert torch.equal(ckpt.read(f"{index}._packed_params._packed_params.1"), bias)


def test_inspect_shows_scheme_scale_and_zero_point(qfiles, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["inspect", str(qfiles["tensors"])]) == EXIT_OK
    out = capsys.readouterr().out
    assert "quantization" in out and "per-tensor affine, scale 0.02, zero point 0" in out
    assert "per-channel affine, axis 1, 6 channels" in out
    assert "code references" not in out
    assert main(["inspect", "--json", str(qfiles["dynamic"])]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    tensors = {t["name"]: t for t in data["sections"][0]["tensors"]}
    quant = tensors["0._packed_params._packed_params.0"]["quantization"]
    assert quant["scheme"] == "per_tensor_affine" and quant["zero_point"] == 0
    assert data["findings"] == []
    assert main(["scan", str(qfiles["static"])]) == EXIT_OK


def test_convert_to_safetensors_refuses_plainly(qfiles, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.safetensors"
    assert main(["convert", str(qfiles["dynamic"]), "-o", str(out)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "safetensors cannot store tensors of type qint8" in err
    assert "'0._packed_params._packed_params.0'" in err and "Traceback" not in err
    assert not out.exists() and os.listdir(tmp_path) == []
    # dropping the quantized tensors leaves a plain float/int checkpoint that converts
    assert main(["convert", str(qfiles["dynamic"]), "-o", str(out),
                 "--drop", "*._packed_params._packed_params.0"]) == EXIT_OK
    assert "0.scale" in open_checkpoint(out).sections["model"].tensors


def test_each_read_is_a_private_copy(qfiles) -> None:
    """Reading a quantized tensor twice gives equal, independent tensors (no shared buffer)."""
    ckpt: Checkpoint = open_checkpoint(qfiles["tensors"])
    a, b = ckpt.read("pt_qint32"), ckpt.read("pt_qint32")
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()
    del a
    assert torch.equal(b.int_repr(), torch.load(qfiles["tensors"],
                                                weights_only=True)["pt_qint32"].int_repr())


def test_pickled_qtensor_file_bytes_are_what_torch_wrote(qfiles) -> None:
    """The fixture really goes through _rebuild_qtensor and the qscheme globals (guards the tests)."""
    with zipfile.ZipFile(qfiles["tensors"]) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert b"_rebuild_qtensor" in data and b"per_channel_affine" in data
    assert b"per_tensor_affine" in data


# ---- consumers outside the reader: convert to .pt, statistics ---------------------------------


def test_convert_to_pt_keeps_quantized_tensors(qfiles, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "q.pt"
    run = subprocess.run([sys.executable, "-W", "ignore", "-m", "core.cli", "convert",
                          str(qfiles["tensors"]), "--to", "pt", "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == EXIT_OK, run.stderr  # in a subprocess: this once crashed torch (SIGSEGV)
    src, got = (torch.load(p, weights_only=True) for p in (qfiles["tensors"], out))
    assert set(got) == set(src)
    for name, want in src.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape
        if want.is_quantized:
            assert got[name].qscheme() == want.qscheme()
            assert torch.equal(got[name].dequantize(), want.dequantize())


def test_stats_of_a_quantized_tensor_are_of_its_real_values(qfiles) -> None:
    from core.stats import tensor_stats

    ckpt = open_checkpoint(qfiles["tensors"])
    stats = tensor_stats(ckpt, "pt_qint8")
    want = torch.load(qfiles["tensors"], weights_only=True)["pt_qint8"].dequantize()
    assert stats.min == pytest.approx(want.min().item())
    assert stats.max == pytest.approx(want.max().item())

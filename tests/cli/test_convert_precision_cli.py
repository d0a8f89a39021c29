"""`ckpt-studio convert --dtype fp16` refuses values that would become infinity unless --allow-overflow."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file, save_file

from core.cli.main import EXIT_ERROR, EXIT_OK
from tests.cli.test_convert_cli import run


def source(tmp_path):
    w = torch.randn(16, 16)
    w[0, 5] = 1e5
    path = tmp_path / "src.safetensors"
    save_file({"layers.0.weight": w, "layers.0.bias": torch.randn(16)}, path)
    return path


def test_refused_with_the_tensor_name_and_nothing_written(tmp_path, capsys):
    src = source(tmp_path)
    code, out, err = run(["convert", str(src), "--dtype", "fp16", "--out-dir", str(tmp_path / "out")],
                         capsys)
    assert code == EXIT_ERROR
    assert "'layers.0.weight'" in err and "infinity" in err and "--allow-overflow" in err
    assert "layers.0.bias" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["src.safetensors"]


def test_allowed_overflow_is_written_and_counted(tmp_path, capsys):
    src = source(tmp_path)
    dest = tmp_path / "out.safetensors"
    code, out, err = run(["convert", str(src), "--dtype", "fp16", "--allow-overflow", "-o", str(dest)],
                         capsys)
    assert code == EXIT_OK, err
    assert "1 value(s) became infinity" in out and "layers.0.weight" in out
    assert int(torch.isinf(load_file(dest)["layers.0.weight"]).sum()) == 1
    code, out, err = run(["convert", str(src), "--dtype", "fp16", "--allow-overflow", "--json",
                          "-o", str(tmp_path / "again.safetensors")], capsys)
    precision = json.loads(out)["precision"]
    assert code == EXIT_OK and precision["totals"]["overflow"] == 1
    assert [r["overflow"] for r in precision["tensors"] if r["name"] == "layers.0.weight"] == [1]


def test_bf16_needs_no_permission(tmp_path, capsys):
    src = source(tmp_path)
    code, out, err = run(["convert", str(src), "--dtype", "bf16", "-o", str(tmp_path / "b.safetensors")],
                         capsys)
    assert code == EXIT_OK, err
    assert "cast to bfloat16: 0 value(s) became infinity, 0 became zero" in out


def test_allow_overflow_without_a_16_bit_cast_is_refused(tmp_path, capsys):
    src = source(tmp_path)
    for extra in ([], ["--dtype", "fp32"]):
        code, out, err = run(["convert", str(src), "--allow-overflow", *extra,
                              "-o", str(tmp_path / "x.safetensors")], capsys)
        assert code == EXIT_ERROR and "--allow-overflow only applies to a cast to 16 bits" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]

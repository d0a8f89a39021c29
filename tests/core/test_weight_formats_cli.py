"""The command line over ONNX weights in Constant nodes and If/Loop bodies, sharded `.bin` folders
and GGUF, as a user runs it: inspect lists the tensors, convert writes them, diff compares them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from core.cli.main import main
from tests.core.test_hf_bin_shards import loaded_shards, tiny_state_dict, write_bin_shards
from tests.core.test_onnx_graph_weights import constant_only_model, if_model, loop_model


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("make", [constant_only_model, if_model, loop_model])
def test_onnx_weights_outside_initializers(tmp_path, capsys, make):
    a, expected = make(tmp_path / "a.onnx")
    code, listing = run(capsys, "inspect", "--json", a)
    assert code == 0
    shapes = {t["name"]: t["shape"] for s in json.loads(listing)["sections"] for t in s["tensors"]}
    assert shapes == {name: list(array.shape) for name, array in expected.items()}
    out = tmp_path / "a.safetensors"
    assert run(capsys, "convert", a, "-o", out, "--keep-training")[0] == 0
    written = {k.removeprefix("constants."): v for k, v in load_file(out).items()}
    assert {k: v.numpy().tobytes() for k, v in written.items()} == \
        {k: v.tobytes() for k, v in expected.items()}
    code, text = run(capsys, "diff", "--values", a, a)
    assert code == 0 and "identical" in text
    b, _ = make(tmp_path / "b.onnx")  # fresh random weights
    code, text = run(capsys, "diff", "--values", a, b)
    assert code == 1 and "different" in text


def test_bin_shard_folder(tmp_path, capsys):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    expected = loaded_shards(tmp_path / "m")
    code, listing = run(capsys, "inspect", "--json", tmp_path / "m")
    assert code == 0
    shapes = {t["name"]: t["shape"] for s in json.loads(listing)["sections"] for t in s["tensors"]}
    assert shapes == {name: list(t.shape) for name, t in expected.items()}
    out = tmp_path / "sharded"
    assert run(capsys, "convert", index, "--max-shard-size", "600B", "-o", out)[0] == 0
    assert len(list(out.glob("*.safetensors"))) > 1
    assert run(capsys, "diff", "--values", tmp_path / "m", out)[0] == 0
    state = dict(expected)
    state["pooler.dense.weight"] = state["pooler.dense.weight"] * 2
    write_bin_shards(tmp_path / "changed", state)
    code, text = run(capsys, "diff", "--values", index, tmp_path / "changed")
    assert code == 1 and "pooler.dense.weight" in text


def test_gguf_convert_matches_gguf_dequantize(tmp_path, capsys):
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    from tests.core.test_gguf_reader import write_gguf

    path = tmp_path / "m.gguf"
    stored = write_gguf(path)
    code, text = run(capsys, "inspect", path)
    assert code == 0 and all(name in text for name in stored)
    assert "Q8_0" in text and "Q4_K" in text
    out = tmp_path / "m.safetensors"
    assert run(capsys, "convert", path, "--dtype", "bf16", "-o", out)[0] == 0
    written = load_file(out)
    for name, (array, qtype) in stored.items():
        values = array if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) \
            else gguf.quants.dequantize(array, qtype)
        want = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16)
        assert written[name].dtype == torch.bfloat16
        assert torch.equal(written[name].view(torch.int16), want.view(torch.int16)), name
    code, text = run(capsys, "diff", "--values", path, path)
    assert code == 0


def test_files_without_weights_say_so(tmp_path, capsys):
    from onnx import TensorProto, helper

    from tests.core.test_onnx_graph_weights import save

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    path = save(tmp_path / "relu.onnx", graph)
    code, text = run(capsys, "inspect", path)
    assert "This ONNX file holds no weights" in text
    code, text = run(capsys, "convert", path, "-o", tmp_path / "x.safetensors")
    assert code != 0 and "holds no tensors" in text
    assert not (tmp_path / "x.safetensors").exists()

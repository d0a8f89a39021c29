"""`ckpt-studio inspect` on a model folder, an ONNX graph and a file without tensors."""

from __future__ import annotations

import json

import pytest
import torch
from onnx import TensorProto, helper

from core.cli.main import EXIT_ERROR, EXIT_OK, main
from tests.core.test_model_folder import tiny_bert
from tests.core.test_onnx_graph_weights import constant_only_model, if_model, save


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_folder_shows_its_config_beside_the_tensors(tmp_path, capsys):
    model_dir = tiny_bert(tmp_path)
    code, out, _ = run(["inspect", str(model_dir)], capsys)
    assert code == EXIT_OK
    assert "Config: model type bert, architectures BertModel, hidden size 16, layers 2" in out
    assert "vocabulary 50" in out and "embeddings.word_embeddings.weight" in out
    code, out, _ = run(["inspect", str(model_dir), "--json"], capsys)
    data = json.loads(out)
    assert data["metadata"]["config"]["hidden_size"] == 16
    assert data["path"] == str(model_dir / "model.safetensors")


def test_a_folder_without_weights_is_one_sentence(tmp_path, capsys):
    code, out, err = run(["inspect", str(tmp_path)], capsys)
    assert code == EXIT_ERROR
    assert "holds no model weights: expected one of model.safetensors" in out + err
    assert "Traceback" not in out + err


def test_onnx_graph_summary_and_sections(tmp_path, capsys):
    path, _ = constant_only_model(tmp_path / "c.onnx")
    code, out, _ = run(["inspect", str(path)], capsys)
    assert code == EXIT_OK
    assert "Inputs: x: float32[batch, 6]" in out and "Outputs: y: float32[batch, ?, 3]" in out
    assert "opsets: ai.onnx 18" in out and "8 Constant nodes" in out
    assert "Section 'constants'" in out and "fc2.weight" in out
    path, _ = if_model(tmp_path / "if.onnx")
    _, out, _ = run(["inspect", str(path)], capsys)
    assert "If_0/then_branch/then_w" in out


def test_no_tensors_never_looks_like_success(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = save(tmp_path / "relu.onnx", graph)
    code, out, _ = run(["inspect", str(path)], capsys)
    assert "Note: This ONNX file holds no weights" in out
    code, out, _ = run(["inspect", str(path), "--json"], capsys)
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["no-tensors"]
    torch.save({"epoch": 3}, tmp_path / "values.pt")
    _, out, _ = run(["inspect", str(tmp_path / "values.pt")], capsys)
    assert "holds no tensors: it holds only plain values (epoch)" in out


def test_gguf_shows_architecture_and_ggml_types(tmp_path, capsys):
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    from tests.core.test_gguf_reader import write_gguf

    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    code, out, _ = run(["inspect", str(path)], capsys)
    assert code == EXIT_OK
    assert "GGUF v3: llama (tiny-llama)" in out and "context_length 128" in out
    assert "stored as" in out and "Q4_K" in out and "blk.0.attn_q.weight" in out

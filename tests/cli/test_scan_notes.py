"""`scan` keeps notes about the file (no tensors, an unreadable config) apart from code references."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from core.cli.main import EXIT_OK, main


def test_a_file_without_weights_is_a_note_not_a_code_reference(tmp_path: Path, capsys) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), path)
    assert main(["scan", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("Note: This ONNX file holds no weights")
    assert "No code references found" in out and "code references" not in out.split("\n")[0]

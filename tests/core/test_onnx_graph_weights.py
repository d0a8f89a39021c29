"""ONNX weights outside the initializer list: Constant nodes, sparse values, If/Loop/Scan subgraphs."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import load_file

from core.convert import convert
from core.convert.transforms import ConvertOptions
from core.diff.structure import diff_files
from core.errors import CheckpointError
from core.formats import onnx as onnx_reader
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint
from core.stats import tensor_stats
from core.tensor_io import read_tensor

RNG = np.random.default_rng(0)
F32 = TensorProto.FLOAT


def weights(shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def const(output: str, array: np.ndarray, typed: bool = False) -> onnx.NodeProto:
    """A Constant node holding `array` as raw bytes, or (typed) in float_data/int64_data."""
    if typed:
        code = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor = helper.make_tensor(output, code, array.shape, array.reshape(-1).tolist())
    else:
        tensor = numpy_helper.from_array(array, output)
    return helper.make_node("Constant", [], [output], value=tensor)


def save(path: Path, graph: onnx.GraphProto, opset: int = 18) -> Path:
    model = helper.make_model(graph, producer_name="graph-test",
                              opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def constant_only_model(path: Path, scale: float = 1.0) -> tuple[Path, dict[str, np.ndarray]]:
    """Every weight in a Constant node, none in the initializer list (as Paddle2ONNX writes)."""
    w1, b1, w2 = weights((6, 8), scale), weights((8,)), weights((8, 3), scale)
    sp_values = np.array([1.5, -2.0, 4.0], np.float32)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(sp_values, "sv"),
                                       numpy_helper.from_array(np.array([0, 5, 11]), "si"), [4, 3])
    dense_sparse = np.zeros(12, np.float32)
    dense_sparse[[0, 5, 11]] = sp_values
    nodes = [
        const("fc1.weight", w1), const("fc1.bias", b1, typed=True), const("fc2.weight", w2),
        helper.make_node("Constant", [], ["eps"], value_float=1e-5),
        helper.make_node("Constant", [], ["scales"], value_floats=[0.5] * 70),
        helper.make_node("Constant", [], ["axis"], value_int=-1),
        helper.make_node("Constant", [], ["shape"], value_ints=[1, -1, 3]),
        helper.make_node("Constant", [], ["mask"], sparse_value=sparse),
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"]),
        helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
        helper.make_node("MatMul", ["h1", "fc2.weight"], ["h2"]),
        helper.make_node("Reshape", ["h2", "shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "paddle_like", [helper.make_tensor_value_info(
        "x", F32, ["batch", 6])], [helper.make_tensor_value_info("y", F32, ["batch", None, 3])])
    expected = {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2,
                "eps": np.array(1e-5, np.float32), "scales": np.full(70, 0.5, np.float32),
                "axis": np.array(-1, np.int64), "shape": np.array([1, -1, 3], np.int64),
                "mask": dense_sparse.reshape(4, 3)}
    return save(path, graph), expected


def branch(name: str, weight: np.ndarray, bias: np.ndarray) -> onnx.GraphProto:
    """A subgraph y = x @ weight + bias, with weight in a Constant and bias an initializer."""
    nodes = [const(f"{name}_w", weight), helper.make_node("MatMul", ["x", f"{name}_w"], ["mm"]),
             helper.make_node("Add", ["mm", f"{name}_b"], [f"{name}_out"])]
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
        f"{name}_out", F32, None)], initializer=[numpy_helper.from_array(bias, f"{name}_b")])


def if_model(path: Path, then_w: np.ndarray | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    then_w = weights((4, 4)) if then_w is None else then_w
    else_w, then_b, else_b = weights((4, 4)), weights((4,)), weights((4,))
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", then_w, then_b),
                            else_branch=branch("else", else_w, else_b))
    graph = helper.make_graph([node], "if_graph", [
        helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", F32, [2, 4])], [helper.make_tensor_value_info(
            "y", F32, [2, 4])])
    return save(path, graph), {
        "If_0/then_branch/then_w": then_w, "If_0/then_branch/then_b": then_b,
        "If_0/else_branch/else_w": else_w, "If_0/else_branch/else_b": else_b}


def loop_model(path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A Loop whose body multiplies the carried state by a Constant weight each iteration."""
    body_w = weights((3, 3))
    body = helper.make_graph(
        [const("body_w", body_w), helper.make_node("MatMul", ["h_in", "body_w"], ["h_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", F32, [1, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", F32, [1, 3])])
    node = helper.make_node("Loop", ["trip", "", "h0"], ["h"], body=body, name="repeat")
    graph = helper.make_graph([node], "loop_graph", [
        helper.make_tensor_value_info("trip", TensorProto.INT64, []),
        helper.make_tensor_value_info("h0", F32, [1, 3])], [helper.make_tensor_value_info(
            "h", F32, [1, 3])])
    return save(path, graph), {"repeat/body/body_w": body_w}


def assert_tensors(path: Path, expected: dict[str, np.ndarray]) -> None:
    ckpt = open_checkpoint(path)
    for name, array in expected.items():
        info = ckpt.find(name, None)
        assert info.shape == array.shape, name
        ours = read_tensor(info).contiguous().numpy()
        assert ours.dtype == array.dtype and ours.tobytes() == array.tobytes(), name


def test_weights_only_in_constant_nodes(tmp_path):
    path, expected = constant_only_model(tmp_path / "c.onnx")
    ckpt = open_checkpoint(path)
    assert ckpt.weights == "model"
    assert set(ckpt.sections["model"].tensors) == {"fc1.weight", "fc1.bias", "fc2.weight",
                                                    "scales", "mask"}
    assert set(ckpt.sections["constants"].tensors) == {"eps", "axis", "shape"}
    assert_tensors(path, expected)
    encodings = {n: t.storage.encoding for n, t in
                 {**ckpt.sections["model"].tensors, **ckpt.sections["constants"].tensors}.items()}
    assert encodings == {"fc1.weight": "raw", "fc1.bias": "onnx-typed", "fc2.weight": "raw",
                         "scales": "onnx-attribute", "mask": "onnx-sparse", "eps": "raw",
                         "axis": "onnx-attribute", "shape": "onnx-attribute"}
    assert ckpt.metadata["constant_nodes"] == 8 and ckpt.metadata["graph_nodes"] == 12
    assert not [f for f in ckpt.findings if f.kind == "no-tensors"]


def test_inspect_shows_graph_inputs_outputs_with_symbolic_dims(tmp_path):
    path, _ = constant_only_model(tmp_path / "c.onnx")
    result = inspect_checkpoint(open_checkpoint(path)).to_dict()
    meta = result["metadata"]
    assert meta["graph_inputs"] == [{"name": "x", "type": "tensor", "dtype": "float32",
                                     "shape": ["batch", 6]}]
    assert meta["graph_outputs"] == [{"name": "y", "type": "tensor", "dtype": "float32",
                                      "shape": ["batch", None, 3]}]
    assert meta["opset_import"] == {"ai.onnx": 18}
    assert meta["producer_name"] == "graph-test" and meta["ir_version"] == onnx.IR_VERSION
    names = {s["name"]: [t["name"] for t in s["tensors"]] for s in result["sections"]}
    assert names["constants"] == ["eps", "axis", "shape"]
    shapes = {t["name"]: t["shape"] for s in result["sections"] for t in s["tensors"]}
    assert shapes["fc1.weight"] == [6, 8] and shapes["eps"] == [] and shapes["mask"] == [4, 3]


def test_weights_inside_if_branches(tmp_path):
    path, expected = if_model(tmp_path / "if.onnx")
    ckpt = open_checkpoint(path)
    assert set(ckpt.sections["model"].tensors) == set(expected)
    assert_tensors(path, expected)
    assert ckpt.metadata["subgraphs"] == 2


def test_weights_inside_a_loop_body(tmp_path):
    path, expected = loop_model(tmp_path / "loop.onnx")
    assert set(open_checkpoint(path).sections["model"].tensors) == set(expected)
    assert_tensors(path, expected)


def test_scan_body_and_graph_lists_are_named_by_position(tmp_path):
    w, b = weights((2, 2)), weights((2,))
    scan = helper.make_node("Scan", ["s"], ["o"], body=branch("step", w, b), num_scan_inputs=1)
    custom = helper.make_node("Switch", ["s"], ["p"], domain="custom.ops",
                              cases=[branch("a", w, b), branch("b", w * 2, b)])
    graph = helper.make_graph([scan, custom], "g", [helper.make_tensor_value_info("s", F32, [2])],
                              [helper.make_tensor_value_info("o", F32, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                    helper.make_opsetid("custom.ops", 1)])
    path = tmp_path / "scan.onnx"
    path.write_bytes(model.SerializeToString())
    assert_tensors(path, {"Scan_0/body/step_w": w, "Scan_0/body/step_b": b,
                          "Switch_0/cases/0/a_w": w, "Switch_0/cases/1/b_w": w * 2})


def test_convert_writes_every_weight_exactly(tmp_path):
    for make in (constant_only_model, if_model, loop_model):
        path, expected = make(tmp_path / f"{make.__name__}.onnx")
        dest = tmp_path / f"{make.__name__}.safetensors"
        result = convert(path, dest)
        written = load_file(dest)
        model_names = set(open_checkpoint(path).sections["model"].tensors)
        assert set(written) == model_names
        for name in model_names:
            assert written[name].numpy().tobytes() == expected[name].tobytes(), name
        if make is constant_only_model:
            assert result.to_dict()["dropped_sections"] == {"constants": 3}
            everything = tmp_path / "all.safetensors"
            convert(path, everything, options=ConvertOptions(keep_training=True))
            assert torch.equal(load_file(everything)["constants.shape"], torch.tensor([1, -1, 3]))


def test_diff_compares_subgraph_weights(tmp_path):
    then_w = weights((4, 4))
    a, _ = if_model(tmp_path / "a.onnx", then_w)
    b, _ = if_model(tmp_path / "b.onnx", then_w + 1)
    result = diff_files(a, b, values=True)
    different = [k.name for s in result.sections for k in s.keys
                 if k.values and k.values.status == "different"]
    assert "If_0/then_branch/then_w" in different
    assert result.totals["same"] == 4
    c, _ = constant_only_model(tmp_path / "c.onnx")
    d, _ = constant_only_model(tmp_path / "d.onnx")
    assert diff_files(c, c, values=True).value_totals["identical"] == 5
    assert diff_files(c, d, values=True).value_totals["different"] >= 3


def test_diff_compares_loop_body_weights(tmp_path):
    a, expected = loop_model(tmp_path / "a.onnx")
    b, _ = loop_model(tmp_path / "b.onnx")  # another draw of the body weight
    same = diff_files(a, a, values=True)
    assert same.totals["same"] == 1 and same.value_totals["identical"] == 1
    other = diff_files(a, b, values=True)
    [key] = [k for s in other.sections for k in s.keys]
    assert key.name == "repeat/body/body_w" and key.values.status == "different"
    copy = tmp_path / "a.safetensors"
    convert(a, copy)
    assert diff_files(a, copy, values=True).value_totals["identical"] == len(expected)


def test_stats_of_a_constant(tmp_path):
    path, expected = constant_only_model(tmp_path / "c.onnx")
    stats = tensor_stats(open_checkpoint(path), "fc1.weight")
    assert stats.numel == stats.finite == expected["fc1.weight"].size
    assert stats.max == pytest.approx(float(expected["fc1.weight"].max()))


def test_a_graph_without_weights_says_so(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F32, [2])],
                              [helper.make_tensor_value_info("y", F32, [2])])
    ckpt = open_checkpoint(save(tmp_path / "relu.onnx", graph))
    assert ckpt.sections == {} and ckpt.weights is None
    [finding] = [f for f in ckpt.findings if f.kind == "no-tensors"]
    assert "holds no weights" in finding.message and "1 node(s)" in finding.message
    assert inspect_checkpoint(ckpt).to_dict()["findings"][0]["kind"] == "no-tensors"


def test_damaged_sparse_indices_are_one_sentence(tmp_path):
    values = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "v")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0, 99]), "i"), [4])
    node = helper.make_node("Constant", [], ["m"], sparse_value=sparse)
    graph = helper.make_graph([node, helper.make_node("Identity", ["m"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", F32, [4])])
    path = tmp_path / "bad.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    ckpt = open_checkpoint(path)
    with pytest.raises(CheckpointError, match="points outside its shape"):
        ckpt.read("m")


def wire(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (sizes here stay below 2**14)."""
    size = len(payload)
    length = bytes([size]) if size < 128 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([number << 3 | 2]) + length + payload


def test_deeply_nested_subgraphs_are_refused(tmp_path):
    from core.formats.onnx_graph import MAX_DEPTH

    graph = b""
    for _ in range(MAX_DEPTH + 2):  # graph { node { attribute { name, g: graph } } }
        attribute = wire(1, b"body") + wire(6, graph)
        graph = wire(1, wire(4, b"Loop") + wire(5, attribute))
    path = tmp_path / "deep.onnx"
    path.write_bytes(b"\x08\x08" + wire(7, graph))  # ir_version 8, then the graph
    assert onnx_reader.sniff(path, path.read_bytes())
    with pytest.raises(CheckpointError, match="nested too deeply"):
        open_checkpoint(path)


@pytest.mark.parametrize("make", [constant_only_model, if_model, loop_model])
def test_truncated_and_scrambled_graphs_never_escape_as_raw_exceptions(tmp_path, make):
    path, _ = make(tmp_path / "m.onnx")
    data = path.read_bytes()
    rng = random.Random(1)
    damaged = tmp_path / "damaged.onnx"
    cases = [data[:cut] for cut in range(1, len(data), max(len(data) // 60, 1))]
    for _ in range(150):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        cases.append(bytes(buf))
    reached = 0
    for case in cases:
        damaged.write_bytes(case)
        if not onnx_reader.sniff(damaged, case[:4096]):
            continue
        reached += 1
        try:  # the reader itself: the registry would wrap a stray exception
            ckpt = onnx_reader.open(damaged)
        except CheckpointError:
            continue
        for info in ckpt.all_tensors():
            with contextlib.suppress(CheckpointError):
                read_tensor(info)
    assert reached > len(cases) // 2  # most damaged copies reach the reader (any other error fails)


def test_a_subgraph_behind_an_over_long_tag_is_still_found(tmp_path):
    """protobuf accepts a tag written as a longer varint than needed; so must the reader."""
    w = weights((2, 2))
    body = branch("inner", w, weights((2,))).SerializeToString()
    attribute = wire(1, b"body") + b"\xb2\x00" + wire(6, body)[1:]  # field 6 tag in two bytes
    node = wire(4, b"Custom") + wire(7, b"custom.ops") + wire(5, attribute)
    path = tmp_path / "long_tag.onnx"
    path.write_bytes(b"\x08\x08" + wire(7, wire(1, node)))
    parsed = onnx.load(str(path))
    assert parsed.graph.node[0].attribute[0].g.name == "inner"  # the real loader sees the subgraph
    assert_tensors(path, {"Custom_0/body/inner_w": w})

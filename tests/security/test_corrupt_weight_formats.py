"""The truncation and fuzz suites over the formats whose weights sit outside the usual places:
ONNX weights in Constant nodes and If/Loop subgraphs, sharded Hugging Face `.bin` checkpoints
(index, zip shard, legacy shard) and GGUF. Same promises as `test_corrupt_files` and `test_fuzz`:
one CheckpointError sentence within time and memory bounds, nothing written; plus lying variants
(sizes, counts and names that do not add up)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import CheckpointError
from core.formats import open_checkpoint
from tests.core.test_hf_bin_shards import tiny_state_dict, write_bin_shards
from tests.core.test_onnx_graph_weights import constant_only_model, if_model, loop_model
from tests.security.test_corrupt_files import bounded, listing, open_expecting_error
from tests.security.test_fuzz import Span, exercise, mutate, mutations

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

MEMORY = 4 << 20


def gguf_file(folder: Path) -> tuple[Path, Path]:
    from tests.core.test_gguf_reader import write_gguf

    folder.mkdir()
    write_gguf(folder / "m.gguf")
    return folder / "m.gguf", folder / "m.gguf"


def bin_shards(legacy: bool, victim: str) -> Callable[[Path], tuple[Path, Path]]:
    def make(folder: Path) -> tuple[Path, Path]:
        index = write_bin_shards(folder, tiny_state_dict(), legacy=legacy)
        return index, (index if victim == "index" else sorted(folder.glob("*.bin"))[0])
    return make


def onnx_file(build: Callable[[Path], tuple[Path, dict]]) -> Callable[[Path], tuple[Path, Path]]:
    def make(folder: Path) -> tuple[Path, Path]:
        folder.mkdir()
        path, _ = build(folder / "m.onnx")
        return path, path
    return make


# name -> builder of (file to open, file to damage) in a fresh folder
TARGETS: dict[str, Callable[[Path], tuple[Path, Path]]] = {
    "gguf": gguf_file,
    "bin_index": bin_shards(False, "index"),
    "bin_shard_zip": bin_shards(False, "shard"),
    "bin_shard_legacy": bin_shards(True, "shard"),
    "onnx_constants": onnx_file(constant_only_model),
    "onnx_if": onnx_file(if_model),
    "onnx_loop": onnx_file(loop_model),
}


def gguf_data_end(path: Path) -> int:
    """Where the last tensor's bytes end: any cut before it must be refused."""
    return max(int(t.data_offset) + int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_cut_at_every_percent(tmp_path: Path, name: str) -> None:
    target, victim = TARGETS[name](tmp_path / "m")
    data = victim.read_bytes()
    must_fail = gguf_data_end(victim) if name == "gguf" else len(data)
    before = listing(tmp_path)
    for percent in range(100):
        cut = len(data) * percent // 100
        victim.write_bytes(data[:cut])
        with bounded(f"{name} cut at {percent}%", MEMORY):
            # protobuf has no end marker: a cut between two fields is a smaller valid model
            open_expecting_error(target, may_open=name.startswith("onnx") or cut >= must_fail)
    assert listing(tmp_path) == before


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_files_raise_only_checkpoint_errors(tmp_path: Path, name: str) -> None:
    target, victim = TARGETS[name](tmp_path / "m")
    data = victim.read_bytes()
    spans: list[Span] = [(0, len(data))]
    examples = 0
    for seed_value in range(4):
        @seed(seed_value)
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(mutations(len(data), spans))
        def fuzz(edits: list[tuple[int, int, bytes]]) -> None:
            nonlocal examples
            victim.write_bytes(mutate(data, edits))
            examples += 1
            exercise(target)

        fuzz()
    assert examples >= 50


# ---- lying variants ---------------------------------------------------------------------------
def one_sentence(path: Path, match: str) -> None:
    with bounded(path.name, MEMORY), pytest.raises(CheckpointError, match=match) as caught:
        open_checkpoint(path)
    message = caught.value.message
    assert "\n" not in message and message.endswith(".")


def lying_constant(tmp_path: Path, tensor: TensorProto) -> Path:
    node = helper.make_node("Constant", [], ["w"], value=tensor)
    graph = helper.make_graph([node, helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "lying.onnx"
    path.write_bytes(model.SerializeToString())  # no checker: the lie is the point
    return path


def test_onnx_constants_that_lie_about_their_size(tmp_path: Path) -> None:
    huge = numpy_helper.from_array(np.ones(4, np.float32), "w")
    del huge.dims[:]
    huge.dims.extend([1 << 20, 1 << 20])  # a terabyte claimed, 16 bytes held
    one_sentence(lying_constant(tmp_path, huge), "different number of bytes")
    typed = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    typed.dims[0] = 1000
    one_sentence(lying_constant(tmp_path, typed), "different number of values")
    negative = numpy_helper.from_array(np.ones(4, np.float32), "w")
    negative.dims[0] = -4
    one_sentence(lying_constant(tmp_path, negative), "negative size")


def test_an_onnx_loop_body_that_lies_is_named(tmp_path: Path) -> None:
    path, _ = loop_model(tmp_path / "loop.onnx")
    model = onnx.load(path)
    body = model.graph.node[-1].attribute[0].g
    lying = body.initializer[0] if body.initializer else None
    if lying is None:
        [node] = [n for n in body.node if n.op_type == "Constant"][:1]
        lying = node.attribute[0].t
    lying.dims[0] += 1
    path.write_bytes(model.SerializeToString())
    one_sentence(path, "This ONNX file is damaged: tensor '[^']+/body/")


def gguf_lying(tmp_path: Path, where: Callable[[gguf.GGUFReader], int], value: int) -> Path:
    """The GGUF test file with the u64 at `where(reader)` replaced by `value`."""
    path, _ = gguf_file(tmp_path)
    reader = gguf.GGUFReader(path)
    at = where(reader)
    del reader
    raw = bytearray(path.read_bytes())
    struct.pack_into("<Q", raw, at, value)
    path.write_bytes(bytes(raw))
    return path


def last_tensor_offset_at(reader: gguf.GGUFReader) -> int:
    """Where the last tensor's data offset is written (the last part of its directory entry)."""
    field = reader.tensors[-1].field
    return int(field.offset) + sum(int(part.nbytes) for part in field.parts[:-1])


def last_tensor_dim_at(reader: gguf.GGUFReader) -> int:
    field = reader.tensors[-1].field
    return int(field.offset) + sum(int(part.nbytes) for part in field.parts[:3])


@pytest.mark.parametrize(("where", "value"), [
    (lambda r: 8, 1 << 40),  # tensor count
    (lambda r: 16, 1 << 40),  # key/value count
    (lambda r: 24, 1 << 40),  # length of the first key
    (last_tensor_offset_at, 1 << 40),  # data far past the end of the file
    (last_tensor_dim_at, 1 << 40),  # a shape that needs more bytes than the file holds
], ids=["tensor-count", "kv-count", "key-length", "tensor-offset", "tensor-dims"])
def test_gguf_files_that_lie(tmp_path: Path, where: Callable[[gguf.GGUFReader], int],
                             value: int) -> None:
    one_sentence(gguf_lying(tmp_path / "g", where, value), "GGUF file")


def test_bin_indexes_that_lie(tmp_path: Path) -> None:
    cases = {
        "cut": (lambda i: json.dumps(i)[:len(json.dumps(i)) // 2], "not valid JSON"),
        "no_map": (lambda i: json.dumps({"weight_map": {}}), "lists no tensors"),
        "escape": (lambda i: json.dumps({"weight_map": {"a": "../x.bin"}}), "not a plain file name"),
        "ghost": (lambda i: json.dumps({"weight_map": {**i["weight_map"], "ghost": next(
            iter(i["weight_map"].values()))}}), "'ghost' is in"),
    }
    for name, (rewrite, match) in cases.items():
        index = write_bin_shards(tmp_path / name, tiny_state_dict())
        index.write_text(rewrite(json.loads(index.read_text())))
        one_sentence(index, match)
        one_sentence(index.parent, match)  # the folder opens through the same index


def test_the_suite_reaches_the_readers(tmp_path: Path) -> None:
    """Every pristine target opens with its tensors, so the cuts above damage real files."""
    for name, make in TARGETS.items():
        target, _ = make(tmp_path / name)
        assert open_checkpoint(target).all_tensors(), name

"""The hand-written ONNX reader (protobuf scan, no onnx import) against onnx's own loader."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from core.errors import CheckpointError, CorruptFile, UnsafeContent
from core.formats import onnx as onnx_reader
from core.formats import open_checkpoint
from core.formats import protobuf_wire as pw
from core.tensor_io import read_tensor


def same_as_numpy(ours: torch.Tensor, expected: np.ndarray) -> None:
    assert tuple(ours.shape) == expected.shape
    assert ours.element_size() == expected.dtype.itemsize
    mine = ours.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert mine == np.ascontiguousarray(expected).tobytes()


def open_direct(path: Path):
    """The reader itself, not the registry (which would wrap a stray exception as CorruptFile)."""
    assert onnx_reader.sniff(path, path.read_bytes()[:4096])
    return onnx_reader.open(path)


def check_against_onnx(path: Path) -> None:
    ckpt = open_checkpoint(path)
    model = onnx.load(str(path))
    inits = list(model.graph.initializer)
    assert set(ckpt.sections["model"].tensors) == {t.name for t in inits}
    for init in inits:
        same_as_numpy(read_tensor(ckpt.find(init.name)), numpy_helper.to_array(init))


@pytest.mark.parametrize("key", ["onnx", "onnx_external"])
def test_every_initializer_matches_onnx(files, key):
    check_against_onnx(files[key])


def test_storage_points_at_raw_bytes_or_the_data_file(files):
    inline = open_checkpoint(files["onnx"]).all_tensors()
    assert all(t.storage.path == files["onnx"] and t.storage.encoding == "raw" for t in inline)
    external = open_checkpoint(files["onnx_external"])
    data_file = files["onnx_external"].parent / "weights.bin"
    assert all(t.storage.path == data_file for t in external.sections["model"].tensors.values())
    assert [f.name for f in external.findings] == ["weights.bin"]


def test_model_metadata(files):
    ckpt = open_checkpoint(files["onnx"])
    model = onnx.load(str(files["onnx"]))
    assert ckpt.format == "onnx"
    assert ckpt.weights == "model"
    assert ckpt.metadata["ir_version"] == model.ir_version
    assert ckpt.metadata["producer_name"] == "pytorch"
    assert ckpt.metadata["opset_import"] == {"ai.onnx": model.opset_import[0].version}
    assert ckpt.metadata["inputs"] == ["x"]
    assert ckpt.metadata["outputs"] == [o.name for o in model.graph.output]


def test_sniff_claims_only_onnx_files(files):
    for key, path in files.paths.items():
        head = path.read_bytes()[:4096]
        assert onnx_reader.sniff(path, head) == key.startswith("onnx"), key


# ---- handmade models ----------------------------------------------------------------------

def save_model(path: Path, initializers: list[TensorProto], **graph_extra) -> Path:
    node = helper.make_node("Identity", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([node], "g", [x], [y], initializer=initializers, **graph_extra)
    model = helper.make_model(graph, producer_name="test")
    path.write_bytes(model.SerializeToString())  # no external-data rewriting by onnx.save
    return path


TYPED = [
    (TensorProto.FLOAT, [1.5, -2.25, 3.0, 0.0]), (TensorProto.DOUBLE, [1e300, -2.5]),
    (TensorProto.INT64, [-(2**62), 5, -1]), (TensorProto.INT32, [-(2**31), 2**31 - 1, -7]),
    (TensorProto.INT16, [-32768, 32767]), (TensorProto.INT8, [-128, 127, -1]),
    (TensorProto.UINT8, [0, 255, 7]), (TensorProto.UINT16, [65535, 1]),
    (TensorProto.UINT32, [2**32 - 1, 3]), (TensorProto.UINT64, [2**64 - 1, 9]),
    (TensorProto.BOOL, [True, False, True]), (TensorProto.FLOAT16, [1.5, -65504.0, 0.1]),
    (TensorProto.BFLOAT16, [1.5, -3.0e38, 0.1]), (TensorProto.COMPLEX64, [1 + 2j, -3.5j]),
    (TensorProto.COMPLEX128, [1 + 2j, -3.5j]), (TensorProto.FLOAT8E4M3FN, [1.0, -2.0, 0.5]),
    (TensorProto.FLOAT8E5M2, [1.0, -2.0, 0.5]),
]


def test_typed_field_initializers_decode_like_onnx(tmp_path):
    inits = [helper.make_tensor(f"t{dt}", dt, [len(vals)], vals) for dt, vals in TYPED]
    inits.append(helper.make_tensor("matrix", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0]))
    inits.append(helper.make_tensor("empty", TensorProto.FLOAT, [0, 3], []))
    inits.append(helper.make_tensor("raw", TensorProto.INT16, [2], b"\x01\x00\xff\xff", raw=True))
    path = save_model(tmp_path / "typed.onnx", inits)
    ckpt = open_checkpoint(path)
    assert {t.storage.encoding for t in ckpt.all_tensors() if t.name != "raw"} == {"onnx-typed"}
    assert ckpt.find(f"t{TensorProto.FLOAT8E4M3FN}").dtype == "float8_e4m3fn"
    check_against_onnx(path)


def test_string_initializers_are_left_out_and_sparse_ones_read(tmp_path):
    strings = helper.make_tensor("words", TensorProto.STRING, [2], [b"a", b"b"])
    values = helper.make_tensor("sp", TensorProto.FLOAT, [2], [1.0, 2.0])
    indices = helper.make_tensor("sp_idx", TensorProto.INT64, [2], [0, 3])
    sparse = helper.make_sparse_tensor(values, indices, [4])
    keep = helper.make_tensor("keep", TensorProto.FLOAT, [1], [1.0])
    path = save_model(tmp_path / "m.onnx", [strings, keep], sparse_initializer=[sparse])
    ckpt = open_checkpoint(path)
    assert list(ckpt.sections["model"].tensors) == ["keep", "sp"]
    assert ckpt.find("sp").storage.encoding == "onnx-sparse"
    assert read_tensor(ckpt.find("sp")).tolist() == [1.0, 0.0, 0.0, 2.0]
    assert [f.name for f in ckpt.findings] == ["words"]
    assert all(f.severity == "info" for f in ckpt.findings)


def bare_tensor(name: str, dims: list[int], **fields) -> TensorProto:
    """A TensorProto written as is, without the checks helper.make_tensor makes."""
    return TensorProto(name=name, dims=dims, data_type=TensorProto.FLOAT, **fields)


def test_corrupt_initializers_are_refused(tmp_path):
    bad = {
        "negative dims": bare_tensor("n", [-1], raw_data=b""),
        "raw size": bare_tensor("r", [3], raw_data=b"\0" * 8),
        "typed count": bare_tensor("c", [3], float_data=[1.0, 2.0]),
        "no data": bare_tensor("e", [2]),
    }
    for case, tensor in bad.items():
        with pytest.raises(CorruptFile):
            open_direct(save_model(tmp_path / f"{case}.onnx", [tensor]))
    dup = [helper.make_tensor("d", TensorProto.FLOAT, [1], [1.0])] * 2
    with pytest.raises(CorruptFile, match="two tensors named 'd'"):
        open_direct(save_model(tmp_path / "dup.onnx", dup))


# ---- external data ------------------------------------------------------------------------

def external_model(folder: Path, location: str, offset: int = 0, length: int | None = 8,
                   data: bytes | None = b"\0" * 8) -> Path:
    folder.mkdir(exist_ok=True)
    if data is not None and location and not location.startswith("/"):
        (folder / "weights.bin").write_bytes(data)
    tensor = bare_tensor("w", [2], data_location=TensorProto.EXTERNAL)
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    return save_model(folder / "model.onnx", [tensor])


def test_external_data_at_an_offset_reads_the_right_bytes(tmp_path):
    data = b"junk" + np.array([1.25, -4.0], "<f4").tobytes()
    path = external_model(tmp_path / "m", "weights.bin", offset=4, data=data)
    assert read_tensor(open_direct(path).find("w")).tolist() == [1.25, -4.0]
    check_against_onnx(path)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\1" * 8)
    for location in ["../secret.bin", str(tmp_path / "secret.bin"), "sub/../../secret.bin", ""]:
        path = external_model(tmp_path / "m", location)
        with pytest.raises(UnsafeContent) as err:
            open_direct(path)
        assert err.value.findings[0].kind == "external-data"


def test_external_data_through_a_link_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\1" * 8)
    folder = tmp_path / "m"
    path = external_model(folder, "link.bin")
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    with pytest.raises(UnsafeContent):
        open_direct(path)
    os.symlink(tmp_path, folder / "dirlink")  # a link in the middle of the path
    with pytest.raises(UnsafeContent):
        open_direct(external_model(folder, "dirlink/secret.bin"))
    os.link(tmp_path / "secret.bin", folder / "hard.bin")
    with pytest.raises(UnsafeContent):
        open_direct(external_model(folder, "hard.bin"))
    (folder / "adir").mkdir()
    with pytest.raises(UnsafeContent):
        open_direct(external_model(folder, "adir"))


@pytest.mark.parametrize(("offset", "length", "data"), [
    (4, 8, b"\0" * 8),  # offset + length past the end
    (0, None, b"\0" * 6),  # no length: the tensor itself does not fit
    (0, 12, b"\0" * 12),  # length disagrees with shape x dtype
])
def test_external_data_out_of_bounds_is_refused(tmp_path, offset, length, data):
    path = external_model(tmp_path / "m", "weights.bin", offset, length, data)
    with pytest.raises(CorruptFile):
        open_direct(path)


def test_missing_external_data_file_is_named(tmp_path):
    path = external_model(tmp_path / "m", "gone.bin")
    with pytest.raises(CheckpointError) as err:
        open_direct(path)
    assert "gone.bin" in err.value.message


# ---- damaged files --------------------------------------------------------------------------

def test_truncated_onnx_is_refused_at_every_cut(files, tmp_path):
    data = files["onnx"].read_bytes()
    for cut in [1, 2, 5, 20, 40, len(data) // 3, len(data) // 2, len(data) - 300, len(data) - 1]:
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            open_checkpoint(path)
        if onnx_reader.sniff(path, data[:cut][:4096]):
            with pytest.raises(CorruptFile):
                onnx_reader.open(path)


def test_random_damage_never_escapes_as_a_raw_exception(files, tmp_path):
    data = files["onnx"].read_bytes()
    rng = random.Random(0)
    path = tmp_path / "fuzz.onnx"
    opened = 0
    for _ in range(300):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        path.write_bytes(bytes(buf))
        if not onnx_reader.sniff(path, bytes(buf[:4096])):
            continue
        try:  # the reader itself, not the registry (which would wrap a stray exception)
            ckpt = onnx_reader.open(path)
        except CheckpointError:
            continue
        opened += 1
        for info in ckpt.all_tensors():
            with contextlib.suppress(CheckpointError):
                read_tensor(info)
    assert opened > 0


def test_wire_scanner_bounds_every_length():
    with pytest.raises(pw.WireError):
        list(pw.iter_fields(b"\x0a\x05abc", 0, 5))  # 5 bytes promised, 3 present
    with pytest.raises(pw.WireError):
        pw.read_varint(b"\xff" * 11, 0, 11)
    with pytest.raises(pw.WireError):
        list(pw.iter_fields(b"\x0b", 0, 1))  # group wire type
    assert pw.unpack_varints(b"\x96\x01\x01", 0, 3) == [150, 1]
    assert pw.count_varints(b"\x96\x01\x01") == 2

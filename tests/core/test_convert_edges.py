"""Conversion edge cases: views that expand into huge outputs, decoded tensors converted without
torch; the mode of saved .npz files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.cli.main import main
from core.convert import TARGETS, convert
from core.errors import CheckpointError

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


def save(tmp_path: Path, tensors: dict) -> Path:
    path = tmp_path / "views.pt"
    torch.save(tensors, path)
    assert path.stat().st_size < 100_000  # the views stay small on disk
    return path


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_huge_zero_stride_view_is_refused_with_its_name_and_sizes(tmp_path, target):
    src = save(tmp_path, {"small": torch.ones(3), "huge": torch.zeros(1).expand(10**9)})
    out = tmp_path / "out"
    with pytest.raises(CheckpointError) as err:
        convert(src, out, target)
    message = err.value.message
    assert "'huge'" in message and "4 B" in message and "3.7 GB" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views.pt"]  # nothing written


@pytest.mark.parametrize("numel", [10**10, 2**40])
def test_views_larger_than_memory_are_refused_by_the_command_line(tmp_path, capsys, numel):
    src = save(tmp_path, {"w": torch.zeros(2, 1).expand(2, numel)})
    code = main(["convert", str(src), "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "'w'" in err and "Something went wrong" not in err
    assert not (tmp_path / "o.safetensors").exists()


def test_many_views_of_one_small_storage_are_refused_together(tmp_path):
    base = torch.zeros(10)
    views = {f"v{i}": base[i:i + 1].expand(3 * 10**7) for i in range(10)}  # 120 MB each, 1.2 GB in all
    src = save(tmp_path, {"base": base, **views})
    with pytest.raises(CheckpointError, match="views of 40 B of data .* 1.1 GB"):
        convert(src, tmp_path / "o.safetensors")


def test_a_modest_expanded_view_is_written_in_full(tmp_path):
    from safetensors.numpy import load_file

    row = torch.arange(5, dtype=torch.float32)
    src = save(tmp_path, {"rows": row.expand(1000, 5), "zero": torch.tensor(7.0).expand(3, 4)})
    result = convert(src, tmp_path / "o.safetensors")
    got = load_file(tmp_path / "o.safetensors")
    loaded = torch.load(src, weights_only=True)
    assert result.bytes_written == (5000 + 12) * 4
    for name in ("rows", "zero"):
        assert got[name].tobytes() == loaded[name].contiguous().numpy().tobytes()



def gguf_file(tmp_path: Path) -> Path:
    gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")
    q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(5)
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("plain", rng.standard_normal((4, 32)).astype(np.float32))
    quantised = gguf.quants.quantize(rng.standard_normal((8, 64)).astype(np.float32), q.Q8_0)
    writer.add_tensor("quantised", quantised, raw_dtype=q.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def onnx_file(tmp_path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(6)
    typed = rng.standard_normal((3, 5)).astype(np.float32)
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "v"),
                                       numpy_helper.from_array(np.array([0, 7]), "i"), [2, 4])
    nodes = [
        helper.make_node("Constant", [], ["typed"], value=helper.make_tensor(
            "typed", onnx.TensorProto.FLOAT, typed.shape, typed.reshape(-1).tolist())),
        helper.make_node("Constant", [], ["floats"], value_floats=[0.5, -1e-3, 3.0]),
        helper.make_node("Constant", [], ["ints"], value_ints=[1, -1, 3]),
        helper.make_node("Constant", [], ["mask"], sparse_value=sparse),
        helper.make_node("Identity", ["typed"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "consts", [], [helper.make_tensor_value_info(
        "y", onnx.TensorProto.FLOAT, [3, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    path = tmp_path / "consts.onnx"
    path.write_bytes(model.SerializeToString())
    return path


NO_TORCH_PROBE = """
import json, sys
from core.convert import ConvertOptions, convert
src, out, dtype = sys.argv[1:]
convert(src, out, options=ConvertOptions(dtype=dtype or None))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "torch")))
"""


@pytest.mark.parametrize("make", [gguf_file, onnx_file])
@pytest.mark.parametrize("dtype", ["", "bf16", "fp16"])
def test_decoded_tensors_convert_without_torch_bit_for_bit(tmp_path, make, dtype):
    from safetensors.numpy import load_file

    from core.convert.stream import is_decoded_whole, tensor_bytes, torch_dtype
    from core.convert.transforms import DTYPES
    from core.formats import open_checkpoint
    from core.tensor_io import read_tensor

    src, out = make(tmp_path), tmp_path / "out.safetensors"
    done = subprocess.run([sys.executable, "-c", NO_TORCH_PROBE, str(src), str(out), dtype], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    written = load_file(out)
    checkpoint = open_checkpoint(src)
    tensors = checkpoint.sections[checkpoint.weights].tensors
    assert any(is_decoded_whole(info) for info in tensors.values())
    assert sorted(written) == sorted(tensors)
    for name, info in tensors.items():  # what the torch path writes for the same tensor
        reference = read_tensor(info)
        if dtype and info.dtype in ("float32", "float16"):
            reference = reference.to(torch_dtype(DTYPES[dtype]))
        assert written[name].tobytes() == bytes(tensor_bytes(reference)), name


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_npz_files_get_the_usual_mode(tmp_path, umask):
    from core.checks.common import save_npz

    old = os.umask(umask)
    try:
        path = save_npz(tmp_path / "sub" / "inputs.npz", {"x": np.arange(4, dtype=np.float32)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert np.load(path)["x"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert [p.name for p in path.parent.iterdir()] == ["inputs.npz"]  # no temp file left


def test_a_failed_npz_save_leaves_nothing(tmp_path, monkeypatch):
    from core.checks import common

    def full_disk(file, **arrays):
        file.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common.np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        common.save_npz(tmp_path / "x.npz", {"ok": np.ones(2)})
    assert list(tmp_path.iterdir()) == []

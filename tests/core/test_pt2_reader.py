"""torch.export .pt2 archives: weights listed from their configs and read raw; pickles only scanned."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import CorruptFile
from core.formats import open_checkpoint
from core.tensor_io import read_tensor
from tests.fixtures.models import FixtureFiles

ROOT = Path(__file__).resolve().parents[2]


class Mixed(nn.Module):
    """bfloat16 and int buffers, a non-persistent buffer, a lifted constant and a strided view."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("scale", torch.ones(3), persistent=False)
        self.register_buffer("ids", torch.arange(3, dtype=torch.int32))
        self.offset = torch.tensor([2.0, 3.0, 4.0])  # plain attribute -> tensor constant
        self.register_buffer("tview", torch.randn(5, 4).t()[1:])
        self.half_w = nn.Parameter(torch.randn(3).bfloat16())
        self.register_buffer("nothing", torch.empty(0, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x) + self.scale + self.ids + self.offset + self.tview.sum() + self.nothing.sum()
        return y + self.half_w.float()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _expected(path: Path) -> dict[str, torch.Tensor]:
    program = torch.export.load(path)
    tensors = dict(program.state_dict)
    tensors.update({k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)})
    return tensors


def _assert_same(info, expected: torch.Tensor) -> None:
    got = read_tensor(info)
    assert got.dtype == expected.dtype and got.shape == expected.shape, info.name
    assert got.stride() == expected.stride() and torch.equal(got, expected.detach()), info.name


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes]) -> None:
    """Copy a zip, replacing or adding the records named (by suffix after the folder)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        folder = zin.infolist()[0].filename.partition("/")[0]
        for info in zin.infolist():
            rel = info.filename[len(folder) + 1:]
            zout.writestr(zipfile.ZipInfo(info.filename, info.date_time),
                          changes.pop(rel) if rel in changes else zin.read(info))
        for rel, data in changes.items():
            zout.writestr(zipfile.ZipInfo(f"{folder}/{rel}"), data)


@pytest.fixture(scope="module")
def mixed_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "mixed.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Mixed(), (torch.randn(2, 4),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, path)
    return path


def test_names_match_exported_state_dict(files: FixtureFiles) -> None:
    ckpt = open_checkpoint(files["pt2"])
    assert ckpt.format == "pt2" and ckpt.weights == "model"
    assert set(ckpt.sections["model"].tensors) == set(_expected(files["pt2"]))
    assert ckpt.findings == []


def test_values_are_bit_exact(files: FixtureFiles) -> None:
    expected = _expected(files["pt2"])
    for name, info in open_checkpoint(files["pt2"]).sections["model"].tensors.items():
        _assert_same(info, expected[name])


def test_tied_weights_share_one_storage(files: FixtureFiles) -> None:
    tensors = open_checkpoint(files["pt2"]).sections["model"].tensors
    assert tensors["embed.weight"].storage is tensors["head.weight"].storage
    assert tensors["embed.weight"].storage.encoding == "raw"


def test_roles_come_from_the_graph_signature(files: FixtureFiles) -> None:
    tensors = open_checkpoint(files["pt2"]).sections["model"].tensors
    buffers = set(torch.export.load(files["pt2"]).graph_signature.buffers)
    for name, info in tensors.items():
        assert info.role == ("buffer" if name in buffers else "parameter"), name


def test_constants_views_and_dtypes(mixed_pt2: Path) -> None:
    expected = _expected(mixed_pt2)
    tensors = open_checkpoint(mixed_pt2).sections["model"].tensors
    assert set(tensors) == set(expected) == {"lin.weight", "lin.bias", "scale", "ids", "offset",
                                            "tview", "half_w", "nothing"}
    for name, info in tensors.items():
        _assert_same(info, expected[name])
    assert tensors["tview"].storage_offset == 1 and tensors["tview"].stride == (1, 4)
    assert tensors["tview"].storage.nbytes == 5 * 4 * 4  # the whole base storage
    assert tensors["half_w"].role == "parameter" and tensors["half_w"].dtype == "bfloat16"
    assert tensors["scale"].role == tensors["offset"].role == "buffer"


def test_signature_metadata_keeps_symbolic_dims(mixed_pt2: Path) -> None:
    program = open_checkpoint(mixed_pt2).metadata["pt2"]["programs"]["model"]
    (x,) = program["inputs"]
    assert x["kind"] == "tensor" and x["dtype"] == "float32"
    symbol, width = x["shape"]
    assert isinstance(symbol, str) and width == 4
    assert program["dynamic_dims"][symbol] == [1, 64]
    assert program["outputs"][0]["shape"] == [symbol, 3]


def test_subclass_weight_is_scanned_not_loaded(tmp_path: Path) -> None:
    two_tensor = pytest.importorskip("torch.testing._internal.two_tensor")

    class Sub(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = nn.Parameter(two_tensor.TwoTensor(torch.randn(3), torch.randn(3)))
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + self.p

    path = tmp_path / "sub.pt2"
    torch.export.save(torch.export.export(Sub(), (torch.randn(3),)), path)
    ckpt = open_checkpoint(path)
    tensors = ckpt.sections["model"].tensors
    assert set(tensors) == {"p", "lin.weight", "lin.bias"}
    assert tensors["p"].storage is None and tensors["p"].shape == (3,)
    assert any(f.name.endswith("TwoTensor") for f in ckpt.findings)


def _torch_save_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def test_malicious_sample_inputs_are_reported(files: FixtureFiles, tmp_path: Path,
                                              marker: Path) -> None:
    path = tmp_path / "evil.pt2"
    evil = _torch_save_zip(pickle.dumps(_Evil(marker), protocol=2))
    _rewrite(files["pt2"], path, {"data/sample_inputs/model.pt": evil})
    ckpt = open_checkpoint(path)
    (finding,) = ckpt.findings
    assert finding.severity == "dangerous" and finding.name.endswith(".system")
    assert "sample_inputs" in finding.where
    assert set(ckpt.sections["model"].tensors) == set(_expected(files["pt2"]))
    assert not marker.exists()


def test_malicious_opaque_constant_is_reported(files: FixtureFiles, tmp_path: Path,
                                               marker: Path) -> None:
    path = tmp_path / "evil_const.pt2"
    entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
             "tensor_meta": None}
    config = json.dumps({"config": {"evil": entry}}).encode()
    _rewrite(files["pt2"], path, {"data/constants/model_constants_config.json": config,
                                  "data/constants/opaque_obj_0": pickle.dumps(_Evil(marker))})
    ckpt = open_checkpoint(path)
    assert [f.severity for f in ckpt.findings] == ["dangerous"]
    assert ckpt.findings[0].where.endswith("opaque_obj_0")
    assert "evil" not in ckpt.sections["model"].tensors
    assert not marker.exists()


def test_tensor_outside_its_record_is_corrupt(files: FixtureFiles, tmp_path: Path) -> None:
    name = "data/weights/model_weights_config.json"
    with zipfile.ZipFile(files["pt2"]) as z:
        config = json.loads(z.read(f"model/{name}"))
    config["config"]["fc.bias"]["tensor_meta"]["storage_offset"] = {"as_int": 3}
    path = tmp_path / "bad.pt2"
    _rewrite(files["pt2"], path, {name: json.dumps(config).encode()})
    with pytest.raises(CorruptFile, match="fc.bias"):
        open_checkpoint(path)


@pytest.mark.parametrize("fraction", [0.2, 0.6, 0.99])
def test_truncated_archive_is_corrupt(files: FixtureFiles, tmp_path: Path, fraction: float) -> None:
    data = files["pt2"].read_bytes()
    path = tmp_path / "cut.pt2"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFile):
        open_checkpoint(path)


def test_opening_does_not_import_torch(files: FixtureFiles) -> None:
    code = ("import sys; from core.formats import open_checkpoint; "
            f"c = open_checkpoint({str(files['pt2'])!r}); assert c.all_tensors(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_unreadable_pickled_entry_is_a_finding(files: FixtureFiles, tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt2"
    _rewrite(files["pt2"], path, {"data/sample_inputs/model.pt": b"PK\x03\x04 not a zip"})
    (finding,) = open_checkpoint(path).findings
    assert finding.kind == "structure" and "sample_inputs" in finding.where

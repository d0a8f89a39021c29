"""TorchScript archives: weights read as data from data.pkl, roles from the code's text, nothing run."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from core.errors import CheckpointError, CorruptFile
from core.formats import open_checkpoint, torchscript
from core.tensor_io import read_tensor
from tests.fixtures.models import FixtureFiles

ROOT = Path(__file__).resolve().parents[2]


class Scripted(nn.Module):
    """Containers, a non-persistent buffer, a strided view, and tensors that are not state."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
        self.seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 1)})
        self.register_buffer("scale", torch.ones(3), persistent=False)
        self.view_base = torch.randn(4, 4)
        self.register_buffer("tview", self.view_base.t()[1:])
        self.half_w = nn.Parameter(torch.randn(2).half())
        self.ids = torch.arange(5)
        self.table = [torch.ones(2), torch.zeros(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        y = self.heads["a"](self.seq(x)) + self.scale.sum() + self.tview.sum()
        return y + self.half_w.float().sum() + self.ids.sum() + self.table[0].sum()


class WithConstant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tensor([1.0, 2.0]) * 3


def _assert_same(info, expected: torch.Tensor) -> None:
    got = read_tensor(info)
    assert got.dtype == expected.dtype and got.shape == expected.shape, info.name
    assert torch.equal(got, expected), info.name


def _replace_record(src: Path, dst: Path, suffix: str, data: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            content = data if info.filename.endswith(suffix) else zin.read(info)
            zout.writestr(zipfile.ZipInfo(info.filename, info.date_time), content)


def test_names_match_torch_state_dict(files: FixtureFiles) -> None:
    ckpt = open_checkpoint(files["torchscript"])
    expected = torch.jit.load(files["torchscript"]).state_dict()
    assert ckpt.format == "torchscript"
    assert ckpt.weights == "model"
    assert list(ckpt.sections["model"].tensors) == list(expected)
    assert ckpt.findings == []


def test_values_are_bit_exact(files: FixtureFiles) -> None:
    ckpt = open_checkpoint(files["torchscript"])
    expected = torch.jit.load(files["torchscript"]).state_dict()
    for name, info in ckpt.sections["model"].tensors.items():
        _assert_same(info, expected[name])


def test_tied_weights_share_one_storage(files: FixtureFiles) -> None:
    tensors = open_checkpoint(files["torchscript"]).sections["model"].tensors
    assert tensors["embed.weight"].storage is tensors["head.weight"].storage


def test_roles_come_from_the_archive(files: FixtureFiles) -> None:
    tensors = open_checkpoint(files["torchscript"]).sections["model"].tensors
    module = torch.jit.load(files["torchscript"])
    buffers = {name for name, _ in module.named_buffers()}
    for name, info in tensors.items():
        assert info.role == ("buffer" if name in buffers else "parameter"), name


def test_metadata_names_the_classes(files: FixtureFiles) -> None:
    meta = open_checkpoint(files["torchscript"]).metadata["torchscript"]
    assert meta["root_class"] == "__torch__.tests.fixtures.models.TinyNet"
    assert "__torch__.torch.nn.modules.batchnorm.BatchNorm2d" in meta["classes"]
    assert meta["byteorder"] == "little"


def test_scripted_containers_views_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(Scripted()), path)
    ckpt = open_checkpoint(path)
    module = torch.jit.load(path)
    expected = module.state_dict()
    assert list(ckpt.sections["model"].tensors) == list(expected)
    for name, info in ckpt.sections["model"].tensors.items():
        _assert_same(info, expected[name])
    model = ckpt.sections["model"].tensors
    assert model["scale"].role == "buffer" and model["half_w"].role == "parameter"
    assert model["tview"].storage_offset == 1 and model["tview"].stride == (1, 4)
    attrs = ckpt.sections["attributes"].tensors
    assert set(attrs) == {"view_base", "ids", "table.0", "table.1"}
    _assert_same(attrs["ids"], module.ids)
    _assert_same(attrs["table.1"], module.table[1])
    assert attrs["view_base"].storage is model["tview"].storage


def test_traced_constants_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "traced.pt"
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(WithConstant(), torch.randn(2))
    torch.jit.save(traced, path)
    ckpt = open_checkpoint(path)
    assert "model" not in ckpt.sections
    constants = ckpt.sections["constants"].tensors
    _assert_same(constants["c0"], torch.tensor([1.0, 2.0]))


def test_parse_classes_reads_only_declarations() -> None:
    source = (
        'class A(Module):\n  __parameters__ = ["weight", "b\\"q", ]\n  __buffers__ = []\n'
        '  weight : Tensor\n  def forward(self: __torch__.m.A) -> None:\n'
        '    __parameters__ = ["not_me", ]\n    return None\n'
        'class B(object):\n  __parameters__ = []\n  __buffers__ = ["running", ]\n'
        'def helper(x: int) -> int:\n  return x\n'
    )
    classes = torchscript.parse_classes(source, "__torch__.m")
    assert classes["__torch__.m.A"].parameters == ["weight", 'b"q']
    assert classes["__torch__.m.A"].is_module
    assert classes["__torch__.m.B"].buffers == ["running"]
    assert not classes["__torch__.m.B"].is_module


def _evil_module_pickle(marker: Path) -> bytes:
    """A valid TinyNet data.pkl whose one attribute calls os.system (built by hand, never run)."""
    cmd = f"touch {marker}".encode()

    def text(s: bytes) -> bytes:
        return b"X" + len(s).to_bytes(4, "little") + s

    return (b"\x80\x02c__torch__.tests.fixtures.models\nTinyNet\n)\x81}(" + text(b"evil")
            + b"cos\nsystem\n(" + text(cmd) + b"tRub.")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["attribute", "root"])
def test_malicious_global_is_reported_and_never_run(files: FixtureFiles, tmp_path: Path,
                                                    marker: Path, kind: str) -> None:
    if kind == "attribute":
        payload = _evil_module_pickle(marker)
        pickletools.dis(payload, out=io.StringIO())  # a well-formed pickle (never run)
    else:
        payload = pickle.dumps(_Evil(marker), protocol=2)
    path = tmp_path / "evil.pt"
    _replace_record(files["torchscript"], path, "/data.pkl", payload)
    ckpt = open_checkpoint(path)
    dangerous = [f for f in ckpt.findings if f.severity == "dangerous"]
    assert len(dangerous) == 1 and dangerous[0].name in ("os.system", "posix.system", "nt.system")
    assert dangerous[0].where.endswith("/data.pkl")
    assert not any(f.name.startswith("__torch__") for f in ckpt.findings)
    assert not marker.exists()


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.99])
def test_truncated_archive_is_a_checkpoint_error(files: FixtureFiles, tmp_path: Path,
                                                 fraction: float) -> None:
    data = files["torchscript"].read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptFile):
        open_checkpoint(path)


def test_missing_tensor_record_is_a_checkpoint_error(files: FixtureFiles, tmp_path: Path) -> None:
    path = tmp_path / "missing.pt"
    with zipfile.ZipFile(files["torchscript"]) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            if not info.filename.endswith("/data/3"):
                zout.writestr(info.filename, zin.read(info))
    with pytest.raises(CheckpointError):
        open_checkpoint(path)


def test_opening_does_not_import_torch(files: FixtureFiles) -> None:
    code = ("import sys; from core.formats import open_checkpoint; "
            f"c = open_checkpoint({str(files['torchscript'])!r}); assert c.all_tensors(); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

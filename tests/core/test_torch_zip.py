"""torch.save zip checkpoints: every tensor we locate reads back bit for bit as torch.load gives it."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from core.errors import CorruptFile
from core.formats import torch_zip
from core.formats.zip_archive import open_archive
from core.model import TensorInfo
from core.tensor_io import read_tensor

ZIP_FIXTURES = ["state_dict", "renamed_archive", "dtypes", "training", "lightning", "ema",
                "data_parallel"]


def tensor_pairs(tree: Any, ref: Any, path: str = "") -> Iterator[tuple[str, TensorInfo, Any]]:
    """(path, TensorInfo, torch tensor) for every tensor, walking our tree and torch's together."""
    if isinstance(tree, TensorInfo):
        assert isinstance(ref, torch.Tensor), path
        yield path, tree, ref
    elif isinstance(tree, dict):
        assert list(tree) == list(ref), path
        for key in tree:
            yield from tensor_pairs(tree[key], ref[key], f"{path}.{key}")
    elif isinstance(tree, (list, tuple)):
        assert len(tree) == len(ref), path
        for i, (ours, theirs) in enumerate(zip(tree, ref, strict=True)):
            yield from tensor_pairs(ours, theirs, f"{path}[{i}]")


def assert_same_tensor(info: TensorInfo, ref: torch.Tensor, where: str = "") -> None:
    got = read_tensor(info)
    assert (got.dtype, got.shape, got.stride()) == (ref.dtype, ref.shape, ref.stride()), where
    assert got.storage_offset() == ref.storage_offset(), where
    assert info.requires_grad == ref.requires_grad, where
    as_bytes = [t.reshape(-1).view(torch.uint8) for t in (got, ref)]  # bit for bit, NaN included
    assert torch.equal(*as_bytes), where


def assert_tree_matches_torch(tree: Any, path: Path) -> int:
    ref = torch.load(path, weights_only=False)
    pairs = list(tensor_pairs(tree, ref))
    for where, info, tensor in pairs:
        assert_same_tensor(info, tensor, where)
    return len(pairs)


@pytest.mark.parametrize("key", ZIP_FIXTURES)
def test_tensors_match_torch_load(files, key: str) -> None:
    head = files[key].read_bytes()[:4096]
    assert torch_zip.sniff(files[key], head)
    tree, findings, _ = torch_zip.load_tree(open_archive(files[key]))
    assert assert_tree_matches_torch(tree, files[key]) > 0
    if key != "training":  # torch.__version__ is a TorchVersion object, a (harmless) finding
        assert findings == []


@pytest.mark.parametrize("key", ["state_dict", "renamed_archive", "data_parallel", "full_module"])
def test_checkpoint_sections_read_like_the_model(files, key: str) -> None:
    ckpt = torch_zip.open(files[key])
    assert ckpt.format == "torch-zip"
    section = ckpt.sections[ckpt.weights]
    expected = torch.load(files[key], weights_only=False)
    if key == "full_module":
        expected = {**dict(expected.named_parameters(remove_duplicate=False)),
                    **dict(expected.named_buffers())}
    assert set(section.tensors) == set(expected)
    for name, tensor in expected.items():
        assert_same_tensor(section.tensors[name], tensor, name)


def test_tied_weights_share_one_storage(files) -> None:
    tree, _, _ = torch_zip.load_tree(open_archive(files["state_dict"]))
    assert tree["embed.weight"].storage is tree["head.weight"].storage
    assert tree["conv.weight"].storage is not tree["embed.weight"].storage


def test_views_share_storage_with_their_base(files) -> None:
    tree, _, _ = torch_zip.load_tree(open_archive(files["dtypes"]))
    base = tree["f32"].storage
    assert tree["transposed"].storage is base and tree["row_view"].storage is base
    assert tree["transposed"].is_view and tree["row_view"].is_view and not tree["f32"].is_view
    assert tree["row_view"].storage_offset == 10


def test_renamed_archive_folder(files) -> None:
    archive = open_archive(files["renamed_archive"])
    assert archive.folder == "my_weights"
    tree, _, info = torch_zip.load_tree(archive)
    assert info["archive_folder"] == "my_weights"
    assert tree["conv.weight"].storage.key.startswith("my_weights/data/")


def test_full_module_is_opaque_with_findings(files) -> None:
    ckpt = torch_zip.open(files["full_module"])
    names = {f.name for f in ckpt.findings}
    assert "tests.fixtures.models.TinyNet" in names
    # a pickled module's classes are not on the inert-type allowlist: building them could run code
    assert all(f.severity == "dangerous" for f in ckpt.findings)


@pytest.mark.parametrize("key", ["torchscript", "pt2", "legacy", "safetensors", "onnx"])
def test_sniff_rejects_other_formats(files, key: str) -> None:
    assert not torch_zip.sniff(files[key], files[key].read_bytes()[:4096])


def _rewrite(src: Path, dst: Path, edit, compress: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(src) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w", compress) as zout:
        for name, data in edit(entries):
            zout.writestr(zipfile.ZipInfo(name) if compress == zipfile.ZIP_STORED else name, data,
                          compress_type=compress)
    return dst


def test_deflated_records_read_correctly(files, tmp_path: Path) -> None:
    path = _rewrite(files["state_dict"], tmp_path / "deflated.pt", list, zipfile.ZIP_DEFLATED)
    tree, _, _ = torch_zip.load_tree(open_archive(path))
    assert tree["conv.weight"].storage.encoding == "zip-deflate"
    assert assert_tree_matches_torch(tree, path) == 11


def test_record_names_match_ignoring_case_like_torch(files, tmp_path: Path) -> None:
    path = _rewrite(files["state_dict"], tmp_path / "case.pt",
                    lambda es: [(n.replace("data.pkl", "DATA.PKL"), d) for n, d in es])
    assert_tree_matches_torch(torch_zip.load_tree(open_archive(path))[0], path)


def _broken(files, tmp_path: Path, case: str) -> Path:
    src, dst = files["state_dict"], tmp_path / f"{case}.pt"
    if case == "truncated":
        dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    elif case == "prepended":
        dst.write_bytes(b"junk" * 10 + src.read_bytes())
    elif case == "duplicate":
        _rewrite(src, dst, lambda es: [*es, ("state_dict/data.pkl", b"\x80\x02N.")])
    elif case == "outside":
        _rewrite(src, dst, lambda es: [*es, ("other.txt", b"x")])
    elif case == "no_version":
        _rewrite(src, dst, lambda es: [(n, d) for n, d in es if not n.endswith("/version")])
    elif case == "short_storage":
        _rewrite(src, dst, lambda es: [(n, d[:-4] if n.endswith("data/0") else d) for n, d in es])
    elif case == "kelvin":  # "K" (Kelvin sign) lower-cases to "k" in Python, not in torch
        _rewrite(src, dst, lambda es: [(n.replace("data.pkl", "data.p\u212al"), d) for n, d in es])
    elif case == "no_folder":
        _rewrite(src, dst, lambda es: [(n.split("/", 1)[1], d) for n, d in es])
    else:
        shutil.copy(src, dst)
    return dst


@pytest.mark.parametrize("case", ["truncated", "prepended", "duplicate", "outside", "no_version",
                                  "short_storage", "no_folder", "kelvin"])
def test_damaged_archives_are_corrupt_file(files, tmp_path: Path, case: str) -> None:
    path = _broken(files, tmp_path, case)
    with pytest.raises(CorruptFile) as info:
        torch_zip.open(path)
    assert info.value.message.endswith(".")


def test_truncated_checkpoint_is_still_recognised(files, tmp_path: Path) -> None:
    path = _broken(files, tmp_path, "truncated")
    assert torch_zip.sniff(path, path.read_bytes()[:4096])


def test_storage_bigger_than_its_record_is_refused(files, tmp_path: Path) -> None:
    with pytest.raises(CorruptFile, match="claims more data"):
        torch_zip.open(_broken(files, tmp_path, "short_storage"))

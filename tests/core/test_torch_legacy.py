"""Legacy (non-zip) torch.save files: the magic-number sequence, storages located without reading."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest
import torch

from core.errors import CorruptFile, UnsupportedFormat
from core.formats import torch_legacy
from tests.core.test_torch_zip import assert_same_tensor, assert_tree_matches_torch
from tests.fixtures.models import dtype_zoo, tiny_model

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _head(path: Path) -> bytes:
    return path.read_bytes()[:4096]


@pytest.mark.parametrize("key", ["legacy", "dtypes_legacy"])
def test_tensors_match_torch_load(files, key: str) -> None:
    assert torch_legacy.sniff(files[key], _head(files[key]))
    tree, findings, info = torch_legacy.load_tree(files[key])
    assert assert_tree_matches_torch(tree, files[key]) > 0
    assert findings == []
    assert info["byteorder"] == "little"


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
def test_every_pickle_protocol_torch_can_write(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / f"p{protocol}.pt"
    torch.save(dtype_zoo(), path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    assert torch_legacy.sniff(path, _head(path))
    tree, _, _ = torch_legacy.load_tree(path)
    assert assert_tree_matches_torch(tree, path) == len(dtype_zoo())


def test_storage_offsets_point_after_each_element_count(files) -> None:
    tree, _, _ = torch_legacy.load_tree(files["dtypes_legacy"])
    raw = files["dtypes_legacy"].read_bytes()
    storages = {id(t.storage): t.storage for t in tree.values() if t.storage is not None}
    ends = set()
    for storage in storages.values():
        count = int.from_bytes(raw[storage.offset - 8:storage.offset], "little")
        assert count * torch.empty(0, dtype=getattr(torch, storage.dtype)).element_size() \
            == storage.nbytes
        ends.add(storage.offset + storage.nbytes)
    assert max(ends) == len(raw)  # the last storage ends the file


def test_tied_weights_and_views_share_storage(files) -> None:
    tree, _, _ = torch_legacy.load_tree(files["legacy"])
    assert tree["embed.weight"].storage is tree["head.weight"].storage
    zoo, _, _ = torch_legacy.load_tree(files["dtypes_legacy"])
    assert zoo["transposed"].storage is zoo["f32"].storage is zoo["row_view"].storage


def test_checkpoint_via_layout(files) -> None:
    ckpt = torch_legacy.open(files["legacy"])
    assert ckpt.format == "torch-legacy"
    expected = torch.load(files["legacy"], weights_only=False)
    section = ckpt.sections[ckpt.weights]
    assert set(section.tensors) == set(expected)
    for name, tensor in expected.items():
        assert_same_tensor(section.tensors[name], tensor, name)


def test_legacy_full_module(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    model = tiny_model()
    torch.save(model, path, _use_new_zipfile_serialization=False)
    ckpt = torch_legacy.open(path)
    assert "tests.fixtures.models.TinyNet" in {f.name for f in ckpt.findings}
    section = ckpt.sections[ckpt.weights]
    for name, tensor in model.named_parameters():
        assert_same_tensor(section.tensors[name], tensor, name)


def _legacy_bytes(main: bytes, keys: list[str], storages: list[tuple[int, bytes]]) -> bytes:
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(main)
    pickle.dump(keys, out, protocol=2)
    for count, data in storages:
        out.write(count.to_bytes(8, "little") + data)
    return out.getvalue()


class _ViewPickler(pickle.Pickler):
    """Writes pre-1.0 storage views: ('storage', type, root, location, numel, view)."""

    def persistent_id(self, obj):
        if isinstance(obj, tuple) and obj and obj[0] == "VIEW":
            return ("storage", torch.FloatStorage, "root", "cpu", 6, obj[1])
        return None


def test_storage_views_from_old_files(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _ViewPickler(buf, protocol=2).dump({"view": ("VIEW", ("v1", 2, 3)), "root": ("VIEW", None)})
    data = torch.arange(6, dtype=torch.float32).numpy().tobytes()
    path = tmp_path / "views.pt"
    path.write_bytes(_legacy_bytes(buf.getvalue(), ["root"], [(6, data)]))
    tree, _, _ = torch_legacy.load_tree(path)
    root, view = tree["root"], tree["view"]
    assert (view.offset - root.offset, view.nbytes, root.nbytes) == (8, 12, 24)


@pytest.mark.parametrize(("case", "says"), [
    ("truncated", "ends too early"), ("wrong_count", "wrong size"), ("bad_magic", "magic number"),
    ("bad_version", "unknown legacy version"), ("unknown_key", "never uses"),
])
def test_damaged_files_are_corrupt_file(files, tmp_path: Path, case: str, says: str) -> None:
    raw = files["legacy"].read_bytes()
    tree, _, _ = torch_legacy.load_tree(files["legacy"])
    first = min(t.storage.offset for t in tree.values())
    if case == "truncated":
        raw = raw[:-10]
    elif case == "wrong_count":
        raw = raw[:first - 8] + (10**6).to_bytes(8, "little") + raw[first:]
    elif case == "bad_magic":
        raw = pickle.dumps(12345, protocol=2) + raw[len(pickle.dumps(LEGACY_MAGIC, 2)):]
    elif case == "bad_version":
        raw = raw.replace(pickle.dumps(1001, protocol=2)[2:-1], pickle.dumps(1002, 2)[2:-1], 1)
    else:
        raw = _legacy_bytes(pickle.dumps({}, protocol=2), ["nope"], [])
    path = tmp_path / f"{case}.pt"
    path.write_bytes(raw)
    with pytest.raises(CorruptFile, match=says):
        torch_legacy.load_tree(path)


def test_tar_files_are_refused_like_torch_would_read_them(tmp_path: Path) -> None:
    path = tmp_path / "old.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("storages")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(UnsupportedFormat):
        torch_legacy.open(path)


@pytest.mark.parametrize("key", ["state_dict", "torchscript", "safetensors", "onnx"])
def test_sniff_rejects_other_formats(files, key: str) -> None:
    assert not torch_legacy.sniff(files[key], _head(files[key]))


def test_sniff_rejects_plain_pickles(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert not torch_legacy.sniff(path, _head(path))

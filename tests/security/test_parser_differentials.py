"""Where our pickle reading could differ from torch.load, we show exactly what torch loads or refuse.

Each case is a file (written by torch.save where torch writes it, by hand otherwise) whose naive
reading differs from `torch.load`: a control asserts the difference is real, then inspect and
convert must give torch's values bit for bit, or the file is refused with one plain sentence.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from core.convert import convert
from core.errors import CheckpointError
from core.formats import open_checkpoint
from tests.security.payloads import replace_records, torch_zip_with

FOUR = torch.arange(4, dtype=torch.float32)  # what torch_zip_with's record data/0 holds


class Pid:
    """Pickled as a persistent id (a storage reference), as torch.save writes them."""

    def __init__(self, *pid: Any) -> None:
        self.pid = pid


class Rebuild:
    """Pickled as func(*args), then BUILD with `state` when given."""

    def __init__(self, func: Any, *args: Any, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, Pid) else None


def dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def storage(key: Any = "0", numel: int = 4, kind: Any = torch.FloatStorage) -> Pid:
    return Pid("storage", kind, key, "cpu", numel)


def tensor(key: Any = "0", offset: int = 0, size: tuple = (4,), stride: tuple = (1,),
           metadata: Any = None, **kw: Any) -> Rebuild:
    args = (storage(key, **kw), offset, size, stride, False, OrderedDict())
    return Rebuild(torch._utils._rebuild_tensor_v2, *args, *([metadata] if metadata else []))


def zip_file(tmp: Path, name: str, value: Any) -> Path:
    return torch_zip_with(tmp, name, dumps(value))


def refused(path: Path) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    message = caught.value.message
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    return caught.value


def matches_torch(path: Path, tmp: Path) -> dict[str, torch.Tensor]:
    """Inspect (read each tensor) and convert give torch.load's tensors exactly."""
    ref = torch.load(path, weights_only=True)
    ckpt = open_checkpoint(path)
    for name, want in ref.items():
        got = ckpt.read(name)
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        assert torch.equal(got, want), name
    out = tmp / f"{path.stem}.safetensors"
    convert(ckpt, out)
    written = load_file(out)
    assert set(written) == set(ref) and all(torch.equal(written[k], ref[k]) for k in ref)
    return ref


# ---- _rebuild_tensor_v2 metadata: the negative and conjugate bits ------------------------------
def test_neg_view_saved_by_torch_is_refused_not_shown_positive(tmp_path: Path) -> None:
    path = tmp_path / "neg.pt"
    torch.save({"x": torch._neg_view(FOUR)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], -FOUR)  # control
    assert "negated" in refused(path).message
    assert not list(tmp_path.glob("*.safetensors"))


def test_conj_view_saved_by_torch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conj.pt"
    value = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    torch.save({"z": value.conj()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["z"], value.conj())  # control
    assert "conjugated" in refused(path).message


def test_neg_flag_set_to_false_still_negates_in_torch_and_is_refused(tmp_path: Path) -> None:
    path = zip_file(tmp_path, "neg_false", {"x": tensor(metadata={"neg": False})})
    assert torch.equal(torch.load(path, weights_only=True)["x"], -FOUR)  # control: torch negates
    assert "negated" in refused(path).message


def test_metadata_torch_ignores_is_ignored(tmp_path: Path) -> None:
    path = zip_file(tmp_path, "other_flag", {"x": tensor(metadata={"other": True})})
    assert torch.equal(matches_torch(path, tmp_path)["x"], FOUR)


def test_malformed_metadata_is_refused_like_torch(tmp_path: Path) -> None:
    path = zip_file(tmp_path, "bad_flag", {"x": tensor(metadata={"neg": "yes"})})
    with pytest.raises(Exception):  # noqa: B017 - control: torch refuses it too
        torch.load(path, weights_only=True)
    refused(path)


# ---- state that torch applies to a tensor --------------------------------------------------------
def test_build_on_tensor_calls_set_in_torch_and_is_refused(tmp_path: Path) -> None:
    moved = Rebuild(torch._utils._rebuild_tensor_v2, storage(), 0, (4,), (1,), False, OrderedDict(),
                    state=(storage(), 1, (2,), (1,)))
    path = zip_file(tmp_path, "build", {"x": moved})
    assert torch.equal(torch.load(path, weights_only=True)["x"], FOUR[1:3])  # control: set_ ran
    assert "changed after it is built" in refused(path).message


def test_parameter_state_replacing_data_is_refused(tmp_path: Path) -> None:
    param = Rebuild(torch._utils._rebuild_parameter_with_state, tensor(), False, OrderedDict(),
                    {"data": tensor(offset=2, size=(2,))})
    path = zip_file(tmp_path, "param_state", {"p": param})
    assert torch.equal(torch.load(path, weights_only=True)["p"], FOUR[2:])  # control
    assert "extra settings" in refused(path).message


def test_from_type_state_replacing_data_is_refused(tmp_path: Path) -> None:
    args = (storage(), 0, (4,), (1,), False, OrderedDict())
    typed = Rebuild(torch._tensor._rebuild_from_type_v2, torch._utils._rebuild_tensor_v2,
                    torch.Tensor, args, {"data": tensor(offset=3, size=(1,))})
    path = zip_file(tmp_path, "from_type_state", {"t": typed})
    assert torch.equal(torch.load(path, weights_only=True)["t"], FOUR[3:])  # control
    assert "extra settings" in refused(path).message


def test_plain_python_attributes_torch_save_writes_open_like_torch(tmp_path: Path) -> None:
    with_attr, param = FOUR.clone(), torch.nn.Parameter(FOUR.clone())
    with_attr.note, param.note = "x", "y"
    torch.save({"t": with_attr, "p": param}, tmp_path / "attrs.pt")
    ref = matches_torch(tmp_path / "attrs.pt", tmp_path)
    assert (ref["t"].note, ref["p"].note) == ("x", "y")  # control: torch set them, values alone


@pytest.mark.parametrize("state", [{"requires_grad": True}, {"__class__": 1}, ({}, {"data": 2}),
                                   ({}, {}, {}), {1: 2}])
def test_state_naming_tensor_attributes_is_refused(tmp_path: Path, state: Any) -> None:
    param = Rebuild(torch._utils._rebuild_parameter_with_state, tensor(), False, OrderedDict(),
                    state)
    assert "extra settings" in refused(zip_file(tmp_path, "named_state", {"p": param})).message


def test_empty_states_open(tmp_path: Path) -> None:
    param = Rebuild(torch._utils._rebuild_parameter_with_state, tensor(), False, OrderedDict(),
                    ({}, None))
    matches_torch(zip_file(tmp_path, "empty_state", {"p": param}), tmp_path)


# ---- storages keyed by the raw key, as torch's loaded_storages -----------------------------------
def test_int_and_str_keys_are_two_storages_in_torch_and_refused(tmp_path: Path) -> None:
    path = zip_file(tmp_path, "two_keys", {"a": tensor("0"), "b": tensor(0)})
    ref = torch.load(path, weights_only=True)
    assert ref["a"].data_ptr() != ref["b"].data_ptr()  # control: torch reads two copies
    assert "two ways" in refused(path).message


def test_int_key_alone_reads_like_torch(tmp_path: Path) -> None:
    path = zip_file(tmp_path, "int_key", {"a": tensor(0), "b": tensor(0, offset=1, size=(2,))})
    ref = torch.load(path, weights_only=True)
    assert ref["a"].data_ptr() == ref["b"].data_ptr() - 4  # one storage, as we read it
    matches_torch(path, tmp_path)


def test_empty_storage_is_not_reused_across_dtypes(tmp_path: Path) -> None:
    value = {"f": tensor("0", size=(0,), numel=0),
             "i": tensor("0", size=(0,), numel=0, kind=torch.LongStorage)}
    torch.save({"e": torch.zeros(0)}, tmp_path / "empty.pt")  # an empty record data/0
    path = replace_records(tmp_path / "empty.pt", tmp_path / "empty_dtypes.pt",
                           {"data.pkl": dumps(value)})
    ref = torch.load(path, weights_only=True)
    assert (ref["f"].dtype, ref["i"].dtype) == (torch.float32, torch.int64)  # control
    ckpt = open_checkpoint(path)
    assert [ckpt.find(n).dtype for n in ("f", "i")] == ["float32", "int64"]


# ---- legacy files: roots and views in one table keyed by the raw key ----------------------------
def legacy_file(tmp: Path, name: str, value: Any, keys: list[Any],
                roots: list[torch.Tensor]) -> Path:
    from tests.core.test_torch_legacy import _legacy_bytes

    data = [(t.numel(), t.numpy().tobytes()) for t in roots]
    path = tmp / f"{name}.pt"
    path.write_bytes(_legacy_bytes(dumps(value), keys, data))
    return path


def legacy_tensor(key: Any, view: Any = None, size: tuple = (2,), numel: int = 4) -> Rebuild:
    pid = Pid("storage", torch.FloatStorage, key, "cpu", numel, view)
    return Rebuild(torch._utils._rebuild_tensor_v2, pid, 0, size, (1,), False, OrderedDict())


ROOT_1, ROOT_2 = torch.arange(10, 14, dtype=torch.float32), torch.arange(20, 24, dtype=torch.float32)


def test_legacy_view_key_naming_a_root_gives_that_root_like_torch(tmp_path: Path) -> None:
    value = {"y": legacy_tensor("2", size=(4,)), "x": legacy_tensor("1", ("2", 1, 2))}
    path = legacy_file(tmp_path, "view_is_root", value, ["1", "2"], [ROOT_1, ROOT_2])
    ref = matches_torch(path, tmp_path)
    assert torch.equal(ref["x"], ROOT_2[:2])  # control: not ROOT_1[1:3], a view of root "1"


def test_legacy_root_key_naming_a_view_is_refused(tmp_path: Path) -> None:
    value = {"x": legacy_tensor("1", ("2", 1, 2)), "y": legacy_tensor("2", size=(2,))}
    path = legacy_file(tmp_path, "root_is_view", value, ["1", "2"], [ROOT_1, ROOT_2])
    try:
        ref = torch.load(path, weights_only=True)
        assert torch.equal(ref["y"], ref["x"])  # control: torch gives the view of root "1"
    except RuntimeError:
        pass  # or refuses the file: either way not what a separate table would show
    refused(path)


def test_legacy_view_of_a_view_reads_like_torch(tmp_path: Path) -> None:
    value = {"x": legacy_tensor("1", ("v1", 1, 3), size=(3,)),
             "z": legacy_tensor("v1", ("v2", 1, 1), size=(1,))}
    path = legacy_file(tmp_path, "view_of_view", value, ["1"], [ROOT_1])
    assert torch.equal(matches_torch(path, tmp_path)["z"], ROOT_1[2:3])


def test_legacy_int_and_str_keys_are_refused(tmp_path: Path) -> None:
    value = {"a": legacy_tensor(0, size=(4,)), "b": legacy_tensor("0", size=(4,))}
    path = legacy_file(tmp_path, "legacy_two_keys", value, [0, "0"], [ROOT_1, ROOT_2])
    ref = torch.load(path, weights_only=True)
    assert torch.equal(ref["a"], ROOT_1) and torch.equal(ref["b"], ROOT_2)  # control
    assert "two ways" in refused(path).message


def test_legacy_int_key_reads_like_torch(tmp_path: Path) -> None:
    path = legacy_file(tmp_path, "legacy_int_key", {"a": legacy_tensor(7, size=(4,))}, [7], [ROOT_1])
    assert torch.equal(matches_torch(path, tmp_path)["a"], ROOT_1)


# ---- a file that is both safetensors and a pickle -------------------------------------------------
def polyglot(path: Path, marker: Path, body: bytes | None = None) -> Path:
    """Valid safetensors whose bytes are also a pickle running os.system: 'X' + a 4-byte length
    (the header length's low bytes) swallows the start of the JSON, a 'V' inside a metadata string
    reads up to the newline before the closing brace, and the tensor's bytes hold the payload
    (or `body`: opcodes leaving one value on the stack, for a harmless polyglot)."""
    import struct

    from tests.security.payloads import system_call

    data = b"0" + (system_call(marker) if body is None else body) + b"."
    swallowed = 40
    size = 0x58 + (swallowed << 8)  # the header length the first 8 bytes spell
    head = '{"__metadata__":{"p":"'
    tail = f'"}},"t":{{"dtype":"U8","shape":[{len(data)}],"data_offsets":[0,{len(data)}]}}\n}}'
    fill = "a" * (swallowed - 3 - len(head))
    header = (head + fill + "V" + "b" * (size - len(head) - len(fill) - 1 - len(tail)) + tail)
    path.write_bytes(b"X" + struct.pack("<I", swallowed) + b"\0\0\0" + header.encode() + data)
    return path


def test_safetensors_pickle_polyglot_is_read_as_torch_reads_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    marker = tmp_path / "RAN"
    path = polyglot(tmp_path / "poly.safetensors", marker)
    load = f"import pickle; pickle.load(open({str(path)!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", load], check=True, cwd=tmp_path, timeout=60)
    assert marker.exists()  # control: it really is a pickle that runs code
    marker.unlink()
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=120)
    assert not marker.exists()  # torch 2.13 reads it as safetensors, as we do
    ckpt = open_checkpoint(path)
    assert ckpt.format == "safetensors"
    assert torch.equal(ckpt.read("t"), torch.load(path, weights_only=True)["t"])

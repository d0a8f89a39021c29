"""The restricted pickle interpreter: plain data exactly as pickle builds it, globals never resolved."""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import struct
import sys
import time
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import CheckpointError, CorruptFile
from core.formats import pickle_vm
from core.formats.pickle_checks import CYCLE
from core.formats.pickle_vm import DType, PickledOrderedDict, StorageType
from core.model import Opaque, Storage, TensorInfo
from core.scan import is_inert_type

PLAIN = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31, 2**64, -(2**100)],
    "floats": [0.0, -1.5, 1e300, float("inf")],
    "text": ["", "ascii", "héllo ✓", "a\nb\\c'\""],
    "bytes": [b"", b"\x00\xff", b"x" * 300],
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    "nested": {"a": [{"b": (None, True, False)}]},
    "set": {1, 2, 3}, "frozenset": frozenset({"x"}), "bytearray": bytearray(b"ab"),
    "complex": 1 + 2j, "odict": OrderedDict(z=1, a=2),
}


def _weights_only_loads(data: bytes, allowed: set[str]) -> bool:
    import importlib
    import io

    import torch
    from torch import _weights_only_unpickler

    classes = [getattr(importlib.import_module(n.rpartition(".")[0]), n.rpartition(".")[2])
               for n in sorted(allowed)]
    with torch.serialization.safe_globals(classes):
        try:
            _weights_only_unpickler.Unpickler(io.BytesIO(data), encoding="utf-8").load()
        except pickle.UnpicklingError:
            return False
    return True


def load(data: bytes, **kw):
    return pickle_vm.load(data, where="test", **kw)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_matches_pickle(protocol: int) -> None:
    shared = [1, 2]
    value = {**PLAIN, "shared1": shared, "shared2": shared}
    data = pickle.dumps(value, protocol=protocol)
    result = load(data)
    assert result.value == pickle.loads(data)
    assert result.value["shared1"] is result.value["shared2"]
    assert result.end == len(data)
    # findings are only inert types torch's weights-only unpickler refuses (a frozenset, b"")
    assert all(f.severity == "unknown" and is_inert_type(f.name) for f in result.findings)
    if protocol == 2:  # the protocol torch.save writes and torch's weights-only unpickler reads
        refused = {f.name for f in result.findings}
        assert refused and not _weights_only_loads(data, set())
        assert _weights_only_loads(data, refused)
    assert isinstance(result.value["odict"], PickledOrderedDict)


def test_stops_exactly_at_stop_so_pickles_can_follow() -> None:
    first, second = pickle.dumps([1, 2], protocol=2), pickle.dumps("next", protocol=4)
    data = first + second + b"trailing bytes"
    one = load(data)
    assert (one.value, one.end) == ([1, 2], len(first))
    two = load(data, start=one.end)
    assert (two.value, two.end) == ("next", len(first) + len(second))


def test_unknown_global_becomes_opaque_with_finding_and_is_never_imported() -> None:
    data = b"\x80\x02cnot_a_real_module_xyz\nmake\nq\x00K\x01\x85R}X\x01\x00\x00\x00kK\x02sb."
    result = load(data)
    assert "not_a_real_module_xyz" not in sys.modules
    obj = result.value
    assert isinstance(obj, Opaque)
    assert (obj.qualname, obj.args, obj.state) == ("not_a_real_module_xyz.make", (1,), {"k": 2})
    assert [f.name for f in result.findings] == ["not_a_real_module_xyz.make"]
    assert result.findings[0].where == "test"


def test_findings_are_deduplicated() -> None:
    data = b"(cos\nsystem\ncos\nsystem\nl."
    result = load(data)
    assert [f.name for f in result.findings] == ["os.system"]
    assert result.findings[0].severity == "dangerous"


def test_items_on_opaque_are_recorded() -> None:
    data = b"\x80\x02cmod\nC\n)\x81(K\x01K\x02eK\x03K\x04s."
    obj = load(data).value
    assert obj.items == [1, 2, (3, 4)]


def test_python2_names_are_mapped_like_the_real_unpickler() -> None:
    assert load(b"\x80\x02c__builtin__\nset\n]K\x01a\x85R.").value == {1}
    # protocol >= 3 does not map, so the Python 2 name stays unknown
    result = load(b"\x80\x03c__builtin__\nset\n]K\x01a\x85R.")
    assert [f.name for f in result.findings] == ["__builtin__.set"]


def test_quiet_globals_and_handlers() -> None:
    data = b"\x80\x02c__torch__\nNet\n)\x81cmy\nhelper\nK\x05\x85R\x86."
    result = load(data, quiet_globals=lambda q: q.startswith("__torch__."),
                  handlers={"my.helper": lambda x: x * 10})
    net, value = result.value
    assert isinstance(net, Opaque) and value == 50
    assert result.findings == []


@pytest.mark.parametrize(("data", "opcode"), [
    (b"(S'x'\nios\nsystem\n.", "INST"),
    (b"(cos\nsystem\nS'x'\no.", "OBJ"),
    (b"\x80\x02\x82\x01.", "EXT1"),
    (b"\x80\x02\x83\x01\x00.", "EXT2"),
    (b"\x80\x02\x84\x01\x00\x00\x00.", "EXT4"),
    (b"\x80\x05\x97.", "NEXT_BUFFER"),
])
def test_dangerous_opcodes_are_findings(data: bytes, opcode: str) -> None:
    result = load(data)
    assert opcode in [f.name for f in result.findings]
    assert isinstance(result.value, Opaque)


def test_torch_markers() -> None:
    data = (b"\x80\x02(ctorch\nfloat16\nctorch\nHalfStorage\nctorch.storage\nUntypedStorage\n"
            b"ctorch\nSize\nK\x02K\x03\x86\x85Rctorch\ndevice\nX\x04\x00\x00\x00cudaK\x01\x86Rt.")
    result = load(data)
    assert result.value == (DType("float16"), StorageType("float16", "torch.HalfStorage"),
                            StorageType("uint8", "torch.storage.UntypedStorage"), (2, 3),
                            "cuda:1")
    assert result.findings == []


def _body(obj: object) -> bytes:
    """The opcodes that push `obj` (no PROTO, memo or STOP)."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def _tensor_pickle(size: tuple, stride: tuple, offset: int = 0) -> bytes:
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(X\x01\x00\x00\x00kQ" + _body(offset)
            + _body(size) + _body(stride) + b"\x89}tR.")


def _storage(numel: int) -> Storage:
    return Storage(Path("x"), "k", 0, numel * 4, "float32")


def test_tensor_rebuild_gives_tensor_info() -> None:
    storage = _storage(12)
    pids = []
    result = load(_tensor_pickle((3, 4), (4, 1)), persistent_load=lambda pid: pids.append(pid)
                  or storage)
    assert pids == ["k"]
    info = result.value
    assert isinstance(info, TensorInfo)
    assert (info.shape, info.stride, info.dtype, info.storage) == ((3, 4), (4, 1), "float32",
                                                                   storage)
    assert result.findings == []


@pytest.mark.parametrize(("numel", "size", "stride", "offset"), [
    (11, (3, 4), (4, 1), 0),  # storage one element short
    (12, (3, 4), (4, 1), 1),  # offset pushes it out
    (12, (4, 3), (1, 5), 0),  # stride reaches past the end
    (12, (3, -4), (4, 1), 0),  # negative size
    (12, (3, 4), (4,), 0),  # stride of the wrong length
])
def test_tensor_outside_its_storage_is_refused(numel, size, stride, offset) -> None:
    storage = _storage(numel)
    with pytest.raises(CorruptFile):
        load(_tensor_pickle(size, stride, offset), persistent_load=lambda pid: storage)


@pytest.mark.parametrize("data", [
    b"", b"\x80\x02", b"\x80\x02]", b"\x80\x02K", b"\x80\x02X\x05\x00\x00\x00ab.",
    b"\x80\x06N.", b"\xff.", b"a.", b"\x80\x02h\x05.", b"\x80\x02(.", b"\x80\x02Ns.",
    b"\x80\x02K\x01K\x02R.", b"cos\nsystem", b"\x80\x02\x8a\x05\x01.",
    b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", b"\x80\x02Q.",
])
def test_malformed_input_is_corrupt_file(data: bytes) -> None:
    with pytest.raises(CorruptFile) as info:
        load(data)
    assert info.value.message.endswith(".")


@pytest.mark.parametrize("data", [
    b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.",  # BINBYTES8 of 4 EiB
    b"\x80\x03B\xff\xff\xff\xffx.",  # BINBYTES of 4 GiB
    b"\x80\x02\x8b\xff\xff\xff\x7fx.",  # LONG4 of 2 GiB
    b"\x80\x02T\xff\xff\xff\x7fx.",  # BINSTRING of 2 GiB
    b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b".",  # BYTEARRAY8 of 1 TiB
])
def test_declared_lengths_beyond_the_data_never_allocate(data: bytes) -> None:
    start = time.process_time()  # CPU time: other processes' load does not count
    with pytest.raises(CorruptFile):
        load(data)
    assert time.process_time() - start < 1


def test_deep_nesting_is_refused_without_recursion() -> None:
    depth = 100_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    with pytest.raises(CorruptFile, match="nested too deeply"):
        load(data)
    marks = b"\x80\x02" + b"(" * depth + b"l" * depth + b"."
    with pytest.raises(CorruptFile):
        load(marks)


def test_exponential_sharing_is_refused() -> None:
    # each level is a list holding the previous level 20 times: 20**30 values when expanded
    data = b"\x80\x02]q\x00"
    for level in range(1, 31):
        data += b"(" + (b"h" + bytes([level - 1])) * 20 + b"lq" + bytes([level])
    with pytest.raises(CorruptFile, match="repeats itself"):
        load(data + b".")


@pytest.mark.parametrize("data", [
    # a tuple nested a million levels deep used as a dict key / set item (hashing it would
    # overflow the C stack), via SETITEM, ADDITEMS, FROZENSET and builtins.set
    b"\x80\x02}K\x01" + b"\x85" * 1_000_000 + b"K\x02s.",
    b"\x80\x04\x8f(K\x01" + b"\x85" * 1_000_000 + b"\x90.",
    b"\x80\x04(K\x01" + b"\x85" * 1_000_000 + b"\x91.",
    b"\x80\x02c__builtin__\nset\nK\x01" + b"\x85" * 1_000_000 + b"\x85\x85R.",
    # ((t, t), (t, t)) ... : small in the file, 2**200 steps to hash
    b"\x80\x02}K\x01q\x00" + b"0h\x00h\x00\x86q\x00" * 200 + b"K\x02s.",
    # integer keys that all share one hash (quadratic dict insertion)
    b"\x80\x02}(" + b"".join(_body(i * (2**61 - 1)) + b"N" for i in range(1, 50)) + b"u.",
])
def test_keys_that_are_dangerous_to_hash_are_refused(data: bytes) -> None:
    start = time.process_time()  # CPU time: other processes' load does not count
    with pytest.raises(CorruptFile, match="keys too complex"):
        load(data)
    # a guard against a hang, not a speed target: unguarded, these take 2**200 steps or crash the
    # C stack; refused, they take ~1 s of CPU
    assert time.process_time() - start < 30


def test_reusing_a_big_value_many_times_is_bounded() -> None:
    # bytearray(<1 MB bytes>) 50 times over: 50 MB of copies from a 1 MB file
    big = b"B" + struct.pack("<I", 1 << 20) + b"x" * (1 << 20) + b"q\x00"
    call = b"cbuiltins\nbytearray\nq\x01" + b"0" + (b"h\x01h\x00\x85R0" * 50)
    with pytest.raises(CorruptFile, match="too large"):
        load(b"\x80\x03" + big + call + b"N.", limits=pickle_vm.Limits(max_work=10_000_000))


def test_self_reference_is_replaced_by_a_marker() -> None:
    value: list = [1]
    value.append(value)
    result = load(pickle.dumps(value, protocol=2)).value
    assert result[0] == 1 and result[1] is CYCLE


def test_limits_are_enforced() -> None:
    tiny = pickle_vm.Limits(max_ops=10)
    with pytest.raises(CorruptFile, match="too large"):
        load(pickle.dumps(list(range(100)), protocol=2), limits=tiny)


def test_is_pickle_start() -> None:
    assert pickle_vm.is_pickle_start(b"\x80\x02}")
    assert pickle_vm.is_pickle_start(b"(lp0\n")
    assert not pickle_vm.is_pickle_start(b"PK\x03\x04")
    assert not pickle_vm.is_pickle_start(b"\x80\x09")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(CheckpointError):
        load(b"\x80\x02" + data)


_PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(-(2**60), 2**60), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_PLAIN_DATA, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_same_value_and_end_as_pickle(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    result = load(data + b"tail")
    assert result.value == pickle.loads(data)
    assert result.end == len(data)


_SEED = pickle.dumps({**PLAIN, "l": [[1, [2, [3]]]]}, protocol=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), max_size=6))
def test_mutated_pickles_never_crash(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SEED)
    for pos, byte in edits:
        data[pos] = byte
    with contextlib.suppress(CheckpointError):
        load(bytes(data))

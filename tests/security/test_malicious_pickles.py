"""Hostile checkpoints: opening one never runs its code, never hangs and never crashes.

Every payload is built at test time (none is stored in the repository). A payload that would run
writes the `marker` file; each case asserts the marker never appears, that opening either fails
with a CheckpointError or reports the offending global/opcode as a finding, and that it is fast.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError
from core.formats import open_checkpoint, pickle_vm


class _Call:
    """Pickles as "call func(*args)" (the classic __reduce__ payload); never called here."""

    def __init__(self, func: Callable, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch(marker: Path) -> str:
    return f"touch '{marker}'"


def _text(value: str) -> bytes:
    """BINUNICODE opcode for a string."""
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


# ---- raw pickles ------------------------------------------------------------------------------
def _getattr_chain(marker: Path) -> bytes:
    # getattr(__import__("os"), "system")("touch marker")
    return (b"\x80\x02c__builtin__\ngetattr\nc__builtin__\n__import__\n" + _text("os")
            + b"\x85R" + _text("system") + b"\x86R" + _text(_touch(marker)) + b"\x85R.")


def _stack_global_via_memo(marker: Path) -> bytes:
    return (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93" + _text(_touch(marker))
            + b"\x85R.")


def _inst(marker: Path) -> bytes:
    return b"(S'" + _touch(marker).replace("'", "\\'").encode() + b"'\nios\nsystem\n."


def _obj(marker: Path) -> bytes:
    return b"(cos\nsystem\nS'" + _touch(marker).replace("'", "\\'").encode() + b"'\no."


def _setstate_on_opaque(marker: Path) -> bytes:
    # BUILD puts os.system in the instance dict as __setstate__; a second BUILD would call it
    for cls in (b"argparse\nNamespace\n", b"collections\nOrderedDict\n"):
        yield (b"\x80\x02c" + cls + b")\x81}" + _text("__setstate__") + b"cos\nsystem\nsb"
               + _text(_touch(marker)) + b"b.")


def _deep_lists(_: Path) -> bytes:
    depth = 100_000
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _huge_binbytes(_: Path) -> bytes:
    return b"\x80\x03B\xff\xff\xff\x7f" + b"x" * 16 + b"."


def _huge_long4(_: Path) -> bytes:
    return b"\x80\x02\x8b\xff\xff\xff\x7f" + b"\x01" * 16 + b"."


def _billion_laughs(_: Path) -> bytes:
    data = b"\x80\x02]q\x00"
    for level in range(1, 40):
        data += b"(" + (b"h" + bytes([level - 1])) * 10 + b"lq" + bytes([level])
    return data + b"."


def _storage_path_escape(_: Path) -> bytes:
    pid = (b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text("../../../etc/passwd")
           + _text("cpu") + b"K\x04tQ")
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + pid
            + b"K\x00K\x04\x85K\x01\x85\x89}tR.")


def _tensor_on_fake_storage(marker: Path) -> bytes:
    # a tensor whose "storage" is the result of os.system(...)
    call = b"cos\nsystem\n" + _text(_touch(marker)) + b"\x85R"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + call
            + b"K\x00K\x04\x85K\x01\x85\x89}tR.")


# ---- containers -------------------------------------------------------------------------------
def _zip_with(files, tmp_path: Path, data_pkl: bytes, name: str) -> Path:
    """A real torch.save zip whose data.pkl is replaced by `data_pkl`."""
    dst = tmp_path / f"{name}.pt"
    with zipfile.ZipFile(files["state_dict"]) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            body = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            out.writestr(zipfile.ZipInfo(info.filename), body)
    return dst


def _torch_save(tmp_path: Path, payload: object, name: str, legacy: bool = False) -> Path:
    path = tmp_path / f"{name}.pt"
    torch.save({"weight": torch.ones(3), "payload": payload}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


def _legacy_header(files, tmp_path: Path, marker: Path) -> Path:
    """The legacy sys-info pickle (read before any tensor) replaced by a payload."""
    raw = files["legacy"].read_bytes()
    magic = pickle_vm.load(raw, where="magic")
    version = pickle_vm.load(raw, where="version", start=magic.end)
    sys_info = pickle_vm.load(raw, where="sys info", start=version.end)
    payload = pickle.dumps(_Call(os.system, _touch(marker)), protocol=2)
    path = tmp_path / "legacy_header.pt"
    path.write_bytes(raw[:version.end] + payload + raw[sys_info.end:])
    return path


def _cases() -> dict[str, tuple[Callable[..., Path], str | None]]:
    """case -> (build(files, tmp_path, marker) -> path, a finding name it must report or None)."""
    system = os.system.__module__ + ".system"
    raw = {  # data.pkl payloads inside a real torch zip
        "getattr_chain": (_getattr_chain, "builtins.getattr"),
        "stack_global_memo": (_stack_global_via_memo, "os.system"),
        "inst_opcode": (_inst, "INST"),
        "obj_opcode": (_obj, "OBJ"),
        "setstate_opaque": (lambda m: next(_setstate_on_opaque(m)), "os.system"),
        "setstate_ordered_dict": (lambda m: list(_setstate_on_opaque(m))[1], "os.system"),
        "deep_nesting": (_deep_lists, None),
        "huge_binbytes": (_huge_binbytes, None),
        "huge_long4": (_huge_long4, None),
        "billion_laughs": (_billion_laughs, None),
        "storage_path_escape": (_storage_path_escape, None),
        "tensor_on_fake_storage": (_tensor_on_fake_storage, "os.system"),
    }
    cases = {name: ((lambda f, t, m, b=build, n=name: _zip_with(f, t, b(m), n)), expect)
             for name, (build, expect) in raw.items()}
    cases.update({
        "reduce_os_system": (lambda f, t, m: _torch_save(
            t, _Call(os.system, _touch(m)), "os_system"), system),
        "subprocess_popen": (lambda f, t, m: _torch_save(
            t, _Call(subprocess.Popen, ["touch", str(m)]), "popen"), "subprocess.Popen"),
        "builtins_exec": (lambda f, t, m: _torch_save(
            t, _Call(builtins.exec, f"open({str(m)!r}, 'w')"), "exec"), "builtins.exec"),
        "builtins_eval_legacy": (lambda f, t, m: _torch_save(
            t, _Call(builtins.eval, f"open({str(m)!r}, 'w')"), "eval", legacy=True),
            "builtins.eval"),
        "legacy_header": (_legacy_header, system),
    })
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_payload_never_runs(files, tmp_path: Path, marker: Path, case: str) -> None:
    build, expect = CASES[case]
    path = build(files, tmp_path, marker)
    start = time.process_time()  # CPU time: a hang burns it, other processes' load does not
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        ckpt = None
        assert exc.message.endswith(".")
    assert time.process_time() - start < 5
    assert not marker.exists()
    if ckpt is not None:
        names = [f.name for f in ckpt.findings] + [f.message for f in ckpt.findings]
        assert expect is not None and any(expect in n for n in names), names
        assert all(f.severity in ("dangerous", "unknown") for f in ckpt.findings
                   if f.kind != "no-tensors")  # "this file holds no tensors" is info


@pytest.mark.parametrize("build", [_inst, _stack_global_via_memo, _getattr_chain])
def test_payloads_are_live(tmp_path: Path, marker: Path, build: Callable[[Path], bytes]) -> None:
    """Control: the real unpickler does run these payloads, so the tests above can fire."""
    pickle.loads(build(marker))  # our own payload: it only touches a temp file
    assert marker.exists()


def test_dangerous_findings_block_weights_only(files, tmp_path: Path, marker: Path) -> None:
    ckpt = open_checkpoint(CASES["reduce_os_system"][0](files, tmp_path, marker))
    system = [f for f in ckpt.findings if f.name.endswith(".system")]
    assert system and system[0].severity == "dangerous" and system[0].blocks_weights_only
    assert system[0].where.endswith("/data.pkl")
    assert "weight" in ckpt.sections[ckpt.weights].tensors or ckpt.all_tensors()


def test_nothing_is_imported(files, tmp_path: Path, marker: Path) -> None:
    import sys

    payload = _Call(OrderedDict, ())
    path = _torch_save(tmp_path, payload, "plain")
    raw = io.BytesIO()
    with zipfile.ZipFile(path) as zf:
        raw.write(zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl"))))
    data = raw.getvalue().replace(b"collections\nOrderedDict", b"zz_evil_mod\nOrderedDict")
    ckpt = open_checkpoint(_zip_with(files, tmp_path, data, "unknown_module"))
    assert "zz_evil_mod" not in sys.modules
    assert "zz_evil_mod.OrderedDict" in {f.name for f in ckpt.findings}

"""The malicious pickle corpus, part 2: tricks test_malicious_pickles.py does not cover yet.

Each case is a checkpoint-shaped file built at test time whose payload would run code (it would
create the `marker` file) if the file were unpickled naively, or that attacks the reader itself
(huge lengths, deep nesting). For every case, opening, inspecting, scanning (also through the CLI)
and converting must refuse it or report it: the payload never runs, every step ends within a time
limit, and the offending global is named, in a finding when the file opens and in the message when
it is refused. `test_torch_load_would_run_it` proves the payloads are live: torch.load with
weights_only=False does run them.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.cli.main import main as cli_main
from core.convert import convert
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint
from core.model import Checkpoint
from core.report import to_json
from core.scan import scan_checkpoint
from tests.fixtures.models import FixtureFiles
from tests.security import framings
from tests.security import payloads as p

SECONDS = 5.0  # each step of each case
SYSTEM = (f"{os.system.__module__}.system", "os.system")  # Call(os.system) pickles as posix.system
Build = Callable[[FixtureFiles, Path, Path], Path]


@dataclass(frozen=True)
class Case:
    build: Build  # (files, tmp_path, marker) -> the hostile file
    names: tuple[str, ...]  # one of these globals must be named; () = a pure resource attack
    live: bool = False  # torch.load(weights_only=False) runs the payload (see the control test)


# ---- raw data.pkl payloads (put inside a real torch.save zip) ---------------------------------
def _proto0(m: Path) -> bytes:
    return b"cos\nsystem\n(V" + p.touch(m).encode() + b"\ntR."


def _lookalike(module: str) -> Callable[[Path], bytes]:
    return lambda m: b"\x80\x02" + p.system_call(m, module) + b"."


def _lookalike_rebuild(_: Path) -> bytes:
    original = p.state_dict_pickle(2)
    fake = "t\u043erch._utils".encode()  # Cyrillic o
    assert b"ctorch._utils\n" in original
    return original.replace(b"ctorch._utils\n", b"c" + fake + b"\n")


def _stack_global(module: bytes, name: bytes) -> Callable[[Path], bytes]:
    """STACK_GLOBAL on two names built by the given opcodes."""
    return lambda m: b"\x80\x04" + module + name + b"\x93" + p.text(p.touch(m)) + b"\x85R."


def _binunicode8(value: str) -> bytes:
    return b"\x8d" + struct.pack("<Q", len(value)) + value.encode()


def _getattr_through_globals(m: Path) -> bytes:
    """getattr(getattr(getattr(_rebuild_tensor_v2, "__globals__").get("sys"), "modules")
    .get("os"), "system")("touch ...") -- starting from a global every allowlist accepts."""
    def get(obj: bytes, attr: str) -> bytes:
        return b"h\x00(" + obj + p.text(attr) + b"tR"

    def call(func: bytes, arg: str) -> bytes:
        return func + b"(" + p.text(arg) + b"tR"

    fn = b"ctorch._utils\n_rebuild_tensor_v2\n"
    sys_mod = call(get(get(fn, "__globals__"), "get"), "sys")
    os_mod = call(get(get(sys_mod, "modules"), "get"), "os")
    return b"\x80\x02c__builtin__\ngetattr\nq\x000" + call(get(os_mod, "system"), p.touch(m)) + b"."


def _memo_overwrite(m: Path) -> bytes:
    """Slot 0 first holds an allowlisted global, then os.system; the GET must see the latter."""
    return (b"\x80\x02ccollections\nOrderedDict\nq\x000cos\nsystem\nq\x000h\x00"
            + p.text(p.touch(m)) + b"\x85R.")


def _memo_sparse_index(m: Path) -> bytes:
    """LONG_BINPUT / LONG_BINGET at index 1,000,000 (memo slots need not be dense)."""
    index = struct.pack("<I", 1_000_000)
    return (b"\x80\x02cos\nsystem\nr" + index + b"0j" + index + p.text(p.touch(m)) + b"\x85R.")


def _then_valid_state_dict(m: Path) -> bytes:
    """The payload runs, its result is popped, then the ordinary state dict follows."""
    return b"\x80\x02" + p.system_call(m) + b"0" + p.state_dict_pickle(2)[2:]


def _tensor(storage: bytes, hooks: bytes) -> bytes:
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
            + b"K\x00K\x04\x85K\x01\x85\x89" + hooks + b"tR")


def _storage_id(storage_type: bytes) -> bytes:
    return b"(" + p.text("storage") + storage_type + p.text("0") + p.text("cpu") + b"K\x04tQ"


def _in_tensor_hooks(m: Path) -> bytes:
    """_rebuild_tensor_v2's backward_hooks argument is os.system(...)."""
    float_storage = _storage_id(b"ctorch\nFloatStorage\n")
    return b"\x80\x02}" + p.text("weight") + _tensor(float_storage, p.system_call(m)) + b"s."


def _build_on_tensor(m: Path) -> bytes:
    """BUILD on a real tensor with os.system(...) as the state (Tensor.__setstate__)."""
    tensor = _tensor(_storage_id(b"ctorch\nFloatStorage\n"), b"ccollections\nOrderedDict\n)R")
    return b"\x80\x02}" + p.text("weight") + tensor + p.system_call(m) + b"bs."


def _in_persistent_id(m: Path) -> bytes:
    """The storage type inside the persistent id is os.system(...)."""
    return b"\x80\x02}" + p.text("weight") + _tensor(_storage_id(p.system_call(m)), b"N") + b"s."


def _deep_calls(m: Path) -> bytes:
    depth = 20_000
    return (b"\x80\x02cos\nsystem\nq\x000" + b"h\x00" * depth + p.text(p.touch(m))
            + b"\x85R" * depth + b".")


def _deep_dicts(_: Path) -> bytes:
    depth = 100_000
    return b"\x80\x02" + (b"}" + p.text("k")) * depth + b"N" + b"s" * depth + b"."


RAW: dict[str, tuple[Callable[[Path], bytes], tuple[str, ...], bool]] = {
    # name: (data.pkl, offending globals, live under torch.load)
    "proto0_text_opcodes": (_proto0, ("os.system",), True),
    "unicode_lookalike_module": (_lookalike("\u043es"), ("\u043es.system",), False),
    "unicode_fullwidth_module": (_lookalike("\uff4f\uff53"), ("\uff4f\uff53.system",), False),
    "unicode_lookalike_allowlisted": (_lookalike_rebuild, ("t\u043erch._utils._rebuild_tensor_v2",),
                                      False),
    "stack_global_unicode_escapes": (_stack_global(b"Vo\\u0073\n", b"Vsy\\u0073tem\n"),
                                     ("os.system",), True),
    "stack_global_binunicode8_dup": (_stack_global(_binunicode8("os") + b"20",
                                                   _binunicode8("system")), ("os.system",), True),
    "dotted_name_reaches_os_system": (_stack_global(p.short_text("torch.serialization"),
                                                    p.short_text("os.system")),
                                      ("torch.serialization.os.system",), True),
    "dotted_name_reaches_os_other": (_stack_global(p.short_text("torch.serialization"),
                                                   p.short_text("os.posix_spawn")),
                                     ("torch.serialization.os.posix_spawn",), False),
    "getattr_through_globals": (_getattr_through_globals, ("builtins.getattr",), True),
    "py2_module_alias": (lambda m: b"\x80\x02ccommands\ngetoutput\n" + p.text(p.touch(m))
                         + b"\x85R.", ("subprocess.getoutput",), True),
    "memo_overwrite": (_memo_overwrite, ("os.system",), True),
    "memo_sparse_index": (_memo_sparse_index, ("os.system",), True),
    "payload_then_valid_state_dict": (_then_valid_state_dict, ("os.system",), True),
    "payload_in_tensor_hooks": (_in_tensor_hooks, ("os.system",), True),
    "build_state_on_tensor": (_build_on_tensor, ("os.system",), True),
    "payload_in_persistent_id": (_in_persistent_id, ("os.system",), True),
    "deep_calls": (_deep_calls, ("os.system",), True),
    "deep_dicts": (_deep_dicts, (), False),
    "deep_marks": (lambda m: b"\x80\x02" + b"(" * 200_000 + b".", (), False),
    "huge_text_long": (lambda m: b"\x80\x02L" + b"9" * 100_000 + b"L\n.", (), False),
    "huge_text_int": (lambda m: b"I" + b"9" * 50_000 + b"\n.", (), False),
    "huge_binunicode8": (lambda m: b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"x.", (),
                         False),
    "huge_bytearray8": (lambda m: b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"x.", (), False),
    "huge_frame": (lambda m: b"\x80\x04\x95" + struct.pack("<Q", 1 << 60) + b"N.", (), False),
}


# ---- whole files --------------------------------------------------------------------------------
def _protocol(n: int) -> Build:
    return lambda f, t, m: p.torch_save(t, f"proto{n}", p.Call(os.system, p.touch(m)), n)


def _legacy(index: int) -> Build:
    return lambda f, t, m: p.legacy_with(t, f"legacy{index}", index, p.prefixed(p.system_call(m)))


def _nested_zip(f: FixtureFiles, t: Path, m: Path) -> Path:
    inner = p.torch_save(t, "inner", p.Call(os.system, p.touch(m)))
    return p.nested_zip(t, "bundle", inner)


def _deflated(f: FixtureFiles, t: Path, m: Path) -> Path:
    return p.torch_zip_with(t, "deflated", _then_valid_state_dict(m), deflate=True)


def _torchscript_constants(f: FixtureFiles, t: Path, m: Path) -> Path:
    constants = b"\x80\x02" + p.system_call(m) + b"\x85."
    return p.replace_records(f["torchscript"], t / "ts_constants.pt", {"/constants.pkl": constants})


def _pt2_damaged_sample_inputs(f: FixtureFiles, t: Path, m: Path) -> Path:
    """torch.export.load unpickles the sample inputs; this pickle names os.system and is cut."""
    damaged = b"\x80\x02" + p.system_call(m)  # no STOP: damaged after the call
    return p.replace_records(f["pt2"], t / "evil.pt2", {"data/sample_inputs/model.pt": damaged})


def _plain_pickle(f: FixtureFiles, t: Path, m: Path) -> Path:
    """Not torch.save at all: pickle.dump of a model, which torch.load reads as a legacy file."""
    path = t / "model.pkl"
    path.write_bytes(p.pickle_of({"weight": [1.0, 2.0], "x": p.Call(os.system, p.touch(m))}, 2))
    return path


def _cases() -> dict[str, Case]:
    cases = {name: Case(lambda f, t, m, b=build, n=name: p.torch_zip_with(t, n, b(m)), names, live)
             for name, (build, names, live) in RAW.items()}
    cases.update({f"protocol_{n}": Case(_protocol(n), SYSTEM, True) for n in (1, 3, 4, 5)})
    cases.update({
        "legacy_magic_number_pickle": Case(_legacy(0), ("os.system",), True),
        "legacy_version_pickle": Case(_legacy(1), ("os.system",), True),
        "legacy_storage_keys_pickle": Case(_legacy(4), ("os.system",), True),
        "nested_zip_bundle": Case(_nested_zip, ()),
        "plain_pickle_file": Case(_plain_pickle, SYSTEM, True),
        "deflated_data_pkl": Case(_deflated, ("os.system",), True),
        "torchscript_constants_pkl": Case(_torchscript_constants, ("os.system",)),
        "pt2_damaged_sample_inputs": Case(_pt2_damaged_sample_inputs, ("os.system",)),
    })
    cases.update({name: Case(*case) for name, case in framings.cases().items()})
    return cases


CASES = _cases()


# ---- the checks ---------------------------------------------------------------------------------
@contextlib.contextmanager
def time_limit(what: str) -> Iterator[None]:
    start = time.process_time()  # CPU time: a hang burns it, other processes' load does not
    yield
    assert time.process_time() - start < SECONDS, f"{what} took too long"


def open_or_refuse(path: Path, case: Case) -> Checkpoint | None:
    """The checkpoint when it opens; None when refused (then the message names the global)."""
    try:
        with time_limit("open"):
            return open_checkpoint(path)
    except CheckpointError as exc:
        assert exc.message.endswith("."), exc.message
        assert not case.names or any(n in exc.message for n in case.names), exc.message
        return None


def check_reported(ckpt: Checkpoint, case: Case) -> None:
    assert case.names, "a pure resource attack must be refused"
    named = [f for f in ckpt.findings if f.name in case.names]
    assert named, [f.name for f in ckpt.findings]
    assert all(f.severity == "dangerous" and f.name in f.message for f in named)
    scan = scan_checkpoint(ckpt)
    assert scan.refused_by_weights_only and scan.allow_line() is None
    with time_limit("inspect"):
        to_json(inspect_checkpoint(ckpt))


def check_convert(ckpt: Checkpoint, out: Path) -> None:
    out.mkdir()
    with time_limit("convert"):
        try:
            result = convert(ckpt, out / "x.safetensors")
        except CheckpointError:
            assert list(out.iterdir()) == []
            return
    assert any("references code" in note for note in result.notes)


def check_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["scan", "--json"], ["inspect", "--json"]):
        with time_limit(command[0]):
            code = cli_main([*command, str(path)])
        assert code in (0, 1, 2), capsys.readouterr().err  # 3 would be "a bug of ours"
        assert command[0] != "scan" or code != 0
    capsys.readouterr()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_or_reported_never_run(files: FixtureFiles, tmp_path: Path, marker: Path,
                                       capsys: pytest.CaptureFixture[str], name: str) -> None:
    case = CASES[name]
    path = case.build(files, tmp_path, marker)
    ckpt = open_or_refuse(path, case)
    if ckpt is not None:
        check_reported(ckpt, case)
        check_convert(ckpt, tmp_path / "out")
    check_cli(path, capsys)
    assert not marker.exists()


def test_corpus_covers_the_issue_list() -> None:
    assert len(CASES) >= 20
    assert {"proto0_text_opcodes", "protocol_1", "protocol_3", "protocol_4", "protocol_5"} <= set(CASES)
    assert sum(c.live for c in CASES.values()) >= 15


@pytest.mark.timeout(120)
def test_torch_load_would_run_it(files: FixtureFiles, tmp_path: Path) -> None:
    """Control: each live case really runs under torch.load(weights_only=False), so the test
    above can fail. Run in a child process: the payloads only touch files in tmp_path."""
    markers, paths = {}, []
    for name, case in CASES.items():
        if case.live:
            (tmp_path / name).mkdir()
            markers[name] = tmp_path / name / "RAN"
            paths.append(str(case.build(files, tmp_path / name, markers[name])))
    code = ("import sys, torch\nfor path in sys.argv[1:]:\n"
            "    try:\n        torch.load(path, weights_only=False)\n"
            "    except Exception:\n        pass\n")
    subprocess.run([sys.executable, "-c", code, *paths], check=True, timeout=100, cwd=tmp_path)
    assert [n for n, m in markers.items() if not m.exists()] == []

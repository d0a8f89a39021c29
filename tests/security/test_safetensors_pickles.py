"""Pickles hidden inside safetensors files: named by scan, never run.

A safetensors file is never unpickled when opened, but its bytes can hold a pickle another tool
would run: the whole file (a polyglot), a metadata text, or a byte tensor's data. Each is built
here with a payload that only touches the test's marker file; a control shows the payload is live.
"""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.cli import main as cli_main
from core.errors import UnsafeContent
from core.formats import open_checkpoint
from core.formats.safetensors_pickle import KIND
from core.scan import scan_checkpoint
from tests.security.payloads import system_call, text, touch
from tests.security.test_parser_differentials import polyglot


def _runs_when_unpickled(data: bytes, marker: Path) -> bool:
    """Control: the bytes really run the payload under pickle.loads (in a child process)."""
    code = f"import pickle, sys; pickle.loads(bytes.fromhex({data.hex()!r}))"
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60, capture_output=True)
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return ran


def _payload(marker: Path, protocol: int) -> bytes:
    """A complete pickle running os.system("touch marker"), protocol 0 (text) or 4."""
    if protocol == 0:
        return b"cos\nsystem\n(V" + touch(marker).encode() + b"\ntR."
    return b"\x80\x04" + system_call(marker) + b"."


def _assert_named(path: Path, where: str, marker: Path, blocks: bool,
                  capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = open_checkpoint(path)
    assert ckpt.format == "safetensors" and ckpt.all_tensors()
    globals_ = [f for f in ckpt.findings if f.kind == "global" and f.name == "os.system"]
    located = [f for f in ckpt.findings if f.kind == KIND]
    assert globals_ and all(f.severity == "dangerous" and f.where.startswith(where) for f in globals_)
    assert len(located) == 1 and located[0].severity == "dangerous"
    assert "'os.system'" in located[0].message and "nothing was run" in located[0].message
    scan = scan_checkpoint(ckpt)
    assert scan.dangerous and scan.allow_line() is None
    assert scan.refused_by_weights_only is blocks
    assert cli_main(["scan", "--json", str(path)]) == (1 if blocks else 0)
    report = json.loads(capsys.readouterr().out)
    assert report["allow_line"] is None and report["dangerous"] == 2
    assert not marker.exists()


def test_polyglot_pickle_is_named(tmp_path: Path, marker: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = polyglot(tmp_path / "poly.safetensors", marker)
    assert _runs_when_unpickled(path.read_bytes(), marker)
    _assert_named(path, "the whole file", marker, True, capsys)


@pytest.mark.parametrize("encoding", ["protocol0_text", "base64_protocol4"])
def test_pickle_in_metadata_is_named(tmp_path: Path, marker: Path, encoding: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    payload = _payload(marker, 0 if encoding == "protocol0_text" else 4)
    assert _runs_when_unpickled(payload, marker)
    value = payload.decode() if encoding == "protocol0_text" else base64.b64encode(payload).decode()
    path = tmp_path / "meta.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={"format": "pt", "extra": value})
    _assert_named(path, "metadata entry 'extra'", marker, False, capsys)


def test_pickle_in_a_byte_tensor_is_named(tmp_path: Path, marker: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    payload = _payload(marker, 4)
    assert _runs_when_unpickled(payload, marker)
    path = tmp_path / "bytes.safetensors"
    save_file({"w": torch.ones(2), "blob": torch.frombuffer(bytearray(payload), dtype=torch.uint8)},
              str(path))
    _assert_named(path, "the data of tensor 'blob'", marker, False, capsys)


def test_plain_data_pickle_is_an_info_note(tmp_path: Path) -> None:
    path = tmp_path / "data.safetensors"
    blob = pickle.dumps({"lr": 0.1}, protocol=4)
    save_file({"w": torch.ones(2), "blob": torch.frombuffer(bytearray(blob), dtype=torch.uint8)},
              str(path))
    found = open_checkpoint(path).findings
    assert [(f.kind, f.severity, f.blocks_weights_only) for f in found] == [(KIND, "info", False)]
    assert "plain data" in found[0].message and not scan_checkpoint(open_checkpoint(path)).dangerous


def test_damaged_pickle_still_names_its_global(tmp_path: Path, marker: Path) -> None:
    """Cut short after the call: pickle.loads would already have run it."""
    payload = b"\x80\x04" + system_call(marker) + text("x")[:3]
    path = tmp_path / "cut.safetensors"
    save_file({"blob": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, str(path))
    found = open_checkpoint(path).findings
    located = [f for f in found if f.kind == KIND]
    assert located and "damaged" in located[0].message and "'os.system'" in located[0].message


@pytest.mark.parametrize("first", [b"X", b"(", b"]", b"}", b"N", b"K", b"c", b"\x80"])
def test_ordinary_files_whose_first_byte_starts_a_pickle_have_no_findings(
        tmp_path: Path, first: bytes) -> None:
    """The header length's low byte is often a pickle opcode: that alone is no finding."""
    entry = {"w": {"dtype": "U8", "shape": [6], "data_offsets": [0, 6]}}
    header = json.dumps(entry).encode()
    size = (len(header) | 0xFF) + 1 + first[0] + 0x200  # low byte `first`, then a small one
    path = tmp_path / "ok.safetensors"
    path.write_bytes(size.to_bytes(8, "little") + header.ljust(size) + bytes(range(6)))
    assert path.read_bytes()[:1] == first
    ckpt = open_checkpoint(path)
    assert ckpt.findings == [] and ckpt.read("w").tolist() == list(range(6))


def test_pickle_named_safetensors_is_refused_naming_the_global(tmp_path: Path, marker: Path,
                                                               capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(_payload(marker, 4))
    with pytest.raises(UnsafeContent) as caught:
        open_checkpoint(path)
    assert "system" in caught.value.message and "pickle" in caught.value.message
    assert cli_main(["scan", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()


def test_pickle_past_the_readers_limits_is_noted(tmp_path: Path, marker: Path) -> None:
    """A payload behind a million pushes (past the stack limit any pickle file gets) is not
    silently passed over: the place is noted as a pickle too large to read to its end."""
    payload = b"\x80\x04" + b"N" * 1_000_001 + system_call(marker) + b"."
    path = tmp_path / "long.safetensors"
    save_file({"w": torch.ones(2), "blob": torch.frombuffer(bytearray(payload), dtype=torch.uint8)},
              str(path))
    found = [(f.kind, f.severity, f.where) for f in open_checkpoint(path).findings]
    assert found == [(KIND, "info", "the data of tensor 'blob'")]
    assert "too long or too complex" in open_checkpoint(path).findings[0].message
    assert not marker.exists()


def test_damaged_polyglot_is_refused_naming_the_global(tmp_path: Path, marker: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Bytes after the last tensor make it a damaged safetensors file, but pickle.load still runs
    it (control): refused as unsafe, naming os.system, not only as damaged."""
    path = polyglot(tmp_path / "poly.safetensors", marker)
    path.write_bytes(path.read_bytes() + b"junk")
    assert _runs_when_unpickled(path.read_bytes(), marker)
    with pytest.raises(UnsafeContent) as caught:
        open_checkpoint(path)
    assert "'os.system'" in caught.value.message and "damaged safetensors" in caught.value.message
    assert "extra bytes" in (caught.value.details or "")
    assert cli_main(["scan", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()


def test_damaged_safetensors_that_is_no_pickle_stays_a_plain_error(tmp_path: Path) -> None:
    from core.errors import CorruptFile

    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.ones(4)}, str(path))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptFile) as caught:
        open_checkpoint(path)
    assert not isinstance(caught.value, UnsafeContent) and "damaged" in caught.value.message


def test_pickle_inside_a_shard_is_named_with_its_shard(tmp_path: Path, marker: Path) -> None:
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file({"a": torch.ones(2)}, str(tmp_path / shards[0]))
    save_file({"b": torch.ones(2)}, str(tmp_path / shards[1]),
              metadata={"extra": _payload(marker, 0).decode()})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"a": shards[0], "b": shards[1]}}))
    ckpt = open_checkpoint(index)
    assert {t.name for t in ckpt.all_tensors()} == {"a", "b"}
    named = [f for f in ckpt.findings if f.name == "os.system"]
    assert named and named[0].severity == "dangerous"
    assert named[0].where == f"{shards[1]}: metadata entry 'extra'"
    assert not marker.exists()

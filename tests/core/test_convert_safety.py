"""Conversion never leaves a partial file: cancel, disk full, interrupt, failed verification,
overwrite rules, the source is never written, and plain safetensors output needs no torch."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.convert import (
    TARGETS,
    ConvertOptions,
    convert,
    convert_many,
    safetensors_single,
    stream,
    torch_pt,
    verify,
)
from core.convert.safetensors_sharded import INDEX_NAME
from core.errors import Cancelled, CheckpointError
from core.progress import Recorder

ROOT = Path(__file__).resolve().parents[2]


def dest_for(tmp_path: Path, target: str) -> Path:
    return tmp_path / ("out" if target == "safetensors-sharded" else f"out.{target}")


def no_hasher_left() -> bool:
    return not any(t.name == "source-hash" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("cancel_after", [1, 6, 12, 19])
@pytest.mark.parametrize("target", list(TARGETS))
def test_cancel_leaves_nothing(files, tmp_path, target, cancel_after):
    recorder = Recorder(cancel_after=cancel_after)
    with pytest.raises(Cancelled):
        convert(files["state_dict"], dest_for(tmp_path, target), target, max_shard_size=400,
                progress=recorder)
    assert list(tmp_path.iterdir()) == []
    assert len(recorder.updates) == cancel_after
    assert no_hasher_left()


def test_progress_counts_up_to_the_total(files, tmp_path):
    recorder = Recorder()
    convert(files["state_dict"], tmp_path / "x.safetensors", progress=recorder)
    done = [d for d, _, _ in recorder.updates]
    assert done == sorted(done) and done[-1] == recorder.updates[-1][1]
    assert any(t.startswith("writing") for *_, t in recorder.updates)
    assert any(t.startswith("verifying") for *_, t in recorder.updates)


def test_keyboard_interrupt_leaves_nothing(files, tmp_path):
    class Interrupt(Recorder):
        def update(self, done: int, total: int, text: str = "") -> None:
            if len(self.updates) == 3:
                raise KeyboardInterrupt
            super().update(done, total, text)

    with pytest.raises(KeyboardInterrupt):
        convert(files["state_dict"], tmp_path / "x.safetensors", progress=Interrupt())
    assert list(tmp_path.iterdir()) == []


class FullDisk:
    """A file object whose writes fail with ENOSPC once `room` bytes were written."""

    def __init__(self, path: str, mode: str, room: int) -> None:
        self.f = open(path, mode)  # noqa: SIM115 - closed in __exit__
        self.room = room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fail_with(code: int):
    def copy_range(*args):
        raise OSError(code, os.strerror(code))
    return copy_range


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("room, kernel", [(0, errno.ENOSPC), (900, errno.ENOSPC), (900, errno.EXDEV)])
def test_disk_full_is_a_plain_error_and_leaves_nothing(files, tmp_path, monkeypatch, target, room,
                                                       kernel):
    """Writes fail once `room` bytes are written; the kernel copy fails with ENOSPC itself or is
    unavailable (EXDEV: another filesystem), so the plain writes run into the full disk."""
    fake = lambda path, mode="r", *a, **k: FullDisk(path, mode, room)  # noqa: E731
    module = torch_pt if target == "pt" else safetensors_single
    monkeypatch.setattr(module, "open", fake, raising=False)
    monkeypatch.setattr(stream, "copy_range", fail_with(kernel))
    with pytest.raises(CheckpointError, match="The disk is full") as info:
        convert(files["state_dict"], dest_for(tmp_path, target), target, max_shard_size=400)
    assert "No space left" in info.value.details
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_file_size_limit_from_the_os_is_a_plain_error(files, tmp_path):
    """A real write error from the kernel (EFBIG under RLIMIT_FSIZE), not a patched one."""
    dest = tmp_path / "x.safetensors"
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))\n"
        "from core.convert import convert\n"
        "from core.errors import CheckpointError\n"
        f"try:\n    convert({str(files['state_dict'])!r}, {str(dest)!r})\n"
        "except CheckpointError as e:\n    print('ERROR', e.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=120)
    assert "ERROR The disk is full" in out.stdout, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_pt_verification_leaves_nothing(files, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "checksum", lambda data: 12345)
    with pytest.raises(CheckpointError, match="Checking the written file failed"):
        convert(files["state_dict"], tmp_path / "x.pt", "pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded"])
@pytest.mark.parametrize("cast", [None, "bf16"])
def test_a_byte_flipped_between_write_and_verify_is_caught(files, tmp_path, monkeypatch, target,
                                                            cast):
    """The output is damaged after it was written and before it is read back: one bit of the
    last tensor's data (copied by the kernel, or cast and written by us) is flipped."""
    real = safetensors_single.verify_and_finish
    damaged = []

    def flip_then_verify(stage, staged, job):
        last = staged[-1]
        at = last.written[-1].offset + last.written[-1].nbytes - 1
        with open(last.path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x10]))
        damaged.append(last.written[-1].name)
        return real(stage, staged, job)

    monkeypatch.setattr(safetensors_single, "verify_and_finish", flip_then_verify)
    with pytest.raises(CheckpointError, match="bytes of tensor '(.*)' differ") as caught:
        convert(files["state_dict"], dest_for(tmp_path, target), target, ConvertOptions(dtype=cast))
    assert damaged and f"'{damaged[0]}'" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_header_that_moves_tensors_is_caught(files, tmp_path, monkeypatch):
    """After the bytes were checked, the header is changed to swap where two same-sized tensors
    lie: the library still opens the file, but the tensors are not where they were written."""
    real = safetensors_single.patch

    def patch_then_swap(path, at, digest):
        real(path, at, digest)
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        by_size = {}
        for name, entry in header.items():
            if name != "__metadata__":
                begin, end = entry["data_offsets"]
                by_size.setdefault((end - begin, entry["dtype"], str(entry["shape"])), []).append(name)
        a, b = next(names for names in by_size.values() if len(names) > 1)[:2]
        header[a]["data_offsets"], header[b]["data_offsets"] = (header[b]["data_offsets"],
                                                                header[a]["data_offsets"])
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        with open(path, "r+b") as f:
            f.seek(8)
            f.write(text.ljust(n))

    monkeypatch.setattr(safetensors_single, "patch", patch_then_swap)
    with pytest.raises(CheckpointError, match="is not where it was written"):
        convert(files["state_dict"], tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", list(TARGETS))
def test_existing_destination_needs_overwrite(files, tmp_path, target):
    dest = dest_for(tmp_path, target)
    convert(files["state_dict"], dest, target)
    before = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*"))
    with pytest.raises(CheckpointError, match="already exists.*--overwrite"):
        convert(files["dtypes"], dest, target)
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("*")) == before
    result = convert(files["dtypes"], dest, target, overwrite=True)
    assert result.tensors_written == 12
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


def test_the_source_is_never_written(files, tmp_path):
    src = tmp_path / "model.safetensors"
    shutil.copy(files["safetensors"], src)
    data = src.read_bytes()
    with pytest.raises(CheckpointError, match="is the file being converted"):
        convert(src, src, overwrite=True)
    link = tmp_path / "link.safetensors"
    os.link(src, link)
    with pytest.raises(CheckpointError, match="is the file being converted"):
        convert(src, link, overwrite=True)
    shards = tmp_path / "sharded"
    shutil.copytree(files["sharded_index"].parent, shards)
    with pytest.raises(CheckpointError, match="is the file being converted"):
        convert(shards / INDEX_NAME, shards, "safetensors-sharded", max_shard_size=600,
                overwrite=True)
    assert src.read_bytes() == data


def test_bad_destinations_are_plain_errors(files, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        convert(files["state_dict"], tmp_path / "missing" / "x.safetensors")
    with pytest.raises(CheckpointError, match="is a folder"):
        convert(files["state_dict"], tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        convert(files["state_dict"], tmp_path / "afile", "safetensors-sharded")
    with pytest.raises(CheckpointError, match="Unknown conversion target"):
        convert(files["state_dict"], tmp_path / "x.gguf", "gguf")
    with pytest.raises(CheckpointError, match="does not exist"):
        convert(tmp_path / "nothing.pt", tmp_path / "x.safetensors")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_is_a_plain_error(files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match="may not write"):
            convert(files["state_dict"], folder / "x.safetensors")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_batch_converts_each_file_and_reports_failures(files, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    out.mkdir()
    batch = convert_many([files["state_dict"], bad, files["lightning"]], out)
    assert [Path(r.outputs[0]["path"]).name for r in batch.results] == [
        "state_dict.safetensors", "lightning.safetensors"]
    assert len(batch.errors) == 1 and batch.errors[0]["source"] == str(bad)
    assert sorted(p.name for p in out.iterdir()) == ["lightning.safetensors",
                                                     "state_dict.safetensors"]
    assert batch.to_dict()["errors"][0]["message"]


def test_plain_safetensors_conversion_needs_no_torch(files, tmp_path):
    code = (
        "import sys\n"
        "from core.convert import convert\n"
        f"for i, src in enumerate({[str(files[k]) for k in ('safetensors', 'state_dict', 'legacy')]!r}):\n"
        f"    convert(src, {str(tmp_path)!r} + f'/out{{i}}.safetensors')\n"
        f"convert({str(files['sharded_index'])!r}, {str(tmp_path / 'shards')!r}, "
        "'safetensors-sharded', max_shard_size=300)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    sd = torch.load(files["state_dict"], weights_only=True)
    loaded = load_file(tmp_path / "out1.safetensors")
    assert torch.equal(loaded["conv.weight"], sd["conv.weight"])


def test_permission_errors_are_plain(files, tmp_path, monkeypatch):
    """Root ignores a read-only folder, so the refusal is simulated where the temp file is made."""
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).endswith(".partial"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(CheckpointError, match="may not write"):
        convert(files["state_dict"], tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_code_in_the_source_is_noted_not_copied(files, tmp_path):
    result = convert(files["full_module"], tmp_path / "x.safetensors")
    assert any("references code" in note for note in result.notes)
    assert load_file(tmp_path / "x.safetensors")


def test_a_bad_kernel_copy_is_caught_by_verification(files, tmp_path, monkeypatch):
    """Tensors copied verbatim are checked against the source hasher's checksums."""

    def zeros(src_fd, dst_fd, count, src_at, dst_at):
        return os.pwrite(dst_fd, bytes(count), dst_at)

    monkeypatch.setattr(stream, "copy_range", zeros)
    with pytest.raises(CheckpointError, match="bytes of tensor .* differ from the source"):
        convert(files["state_dict"], tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_hasher_checksums_overlapping_ranges():
    from core.convert.checksums import checksum
    from core.convert.hashing import _RangeChecksums

    data = bytes(range(256)) * 40
    ranges = {"all": (0, len(data)), "mid": (100, 5000), "inner": (300, 400), "tail": (9000, 10240)}
    running = _RangeChecksums(ranges)
    for pos in range(0, len(data), 777):
        running.update(memoryview(data)[pos:pos + 777], pos)
    assert running.digests() == {k: checksum(data[a:b]) for k, (a, b) in ranges.items()}
    assert len(set(running.digests().values())) == 4

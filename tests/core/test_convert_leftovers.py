"""Temp files a killed writer left behind: a later conversion into the same folder removes those of
our exact naming pattern whose writer is gone, and nothing else (core/convert/atomic.py)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.convert import convert
from core.convert.atomic import TEMP_NAME, Staging, host_tag, remove_stale_temps
from core.convert.safetensors_sharded import INDEX_NAME

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX pids")


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid = proc.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def temp_name(final: str, pid: int, host: str | None = None, rand: str = "0a1b2c3d") -> str:
    return f".{final}.{pid}-{host or host_tag()}-{rand}.partial"


def test_stale_temps_of_a_dead_writer_are_removed_by_the_next_convert(files, tmp_path: Path,
                                                                      dead_pid: int) -> None:
    stale = [tmp_path / temp_name("x.safetensors", dead_pid),
             tmp_path / temp_name("other.pt", dead_pid, rand="ffffffff")]  # same folder, same kind
    for path in stale:
        path.write_bytes(b"half a file")
    convert(files["state_dict"], tmp_path / "x.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]


def test_stale_shard_temps_are_removed_from_the_shard_folder(files, tmp_path: Path,
                                                              dead_pid: int) -> None:
    out = tmp_path / "out"
    out.mkdir()  # a killed sharded conversion left its folder with temps and no index
    stale = out / temp_name("model-00001-of-00003.safetensors", dead_pid)
    stale.write_bytes(b"x")
    convert(files["state_dict"], out, "safetensors-sharded", overwrite=True, max_shard_size=600)
    assert not stale.exists() and (out / INDEX_NAME).exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("name", [
    "{live}",  # a live writer (this process)
    "{other_host}",  # written on another machine sharing the folder: its pid means nothing here
    ".x.safetensors.a1b2c3d4.partial",  # tempfile.mkstemp's names (reports, checks, exports)
    "x.safetensors.{dead}-{host}-0a1b2c3d.partial",  # not hidden
    ".x.safetensors.{dead}-{host}-0a1b2c.partial",  # random part too short
    ".x.safetensors.{dead}-{host}-0A1B2C3D.partial",  # not our hex
    ".x.safetensors.{dead}-{host}-0a1b2c3d.partial.bak",
    ".x.safetensors.0-{host}-0a1b2c3d.partial",  # pid 0 is no writer
    "x.safetensors",
])
def test_other_files_are_kept(tmp_path: Path, dead_pid: int, name: str) -> None:
    host = host_tag()
    other = "0000000" + ("1" if host != "00000001" else "2")
    name = name.format(live=temp_name("x.safetensors", os.getpid()),
                       other_host=temp_name("x.safetensors", dead_pid, host=other),
                       dead=dead_pid, host=host)
    (tmp_path / name).write_bytes(b"keep me")
    assert remove_stale_temps(tmp_path) == []
    assert (tmp_path / name).read_bytes() == b"keep me"


def test_links_folders_and_fifos_of_our_pattern_are_kept(tmp_path: Path, dead_pid: int) -> None:
    target = tmp_path / "precious.bin"
    target.write_bytes(b"data")
    link = tmp_path / temp_name("a.safetensors", dead_pid)
    link.symlink_to(target)
    folder = tmp_path / temp_name("b.safetensors", dead_pid)
    folder.mkdir()
    fifo = tmp_path / temp_name("c.safetensors", dead_pid)
    os.mkfifo(fifo)  # opening it must not hang the clean-up
    assert remove_stale_temps(tmp_path) == []
    assert link.is_symlink() and target.read_bytes() == b"data" and folder.is_dir() and fifo.exists()


def test_a_locked_temp_is_kept_whatever_its_pid(tmp_path: Path, dead_pid: int) -> None:
    """A live writer holds the flock of its temp: even when its pid reads as gone (another pid
    namespace, a reused number), the file is not taken; once the lock goes, it is removed."""
    path = tmp_path / temp_name("x.safetensors", dead_pid)
    path.write_bytes(b"being written")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert remove_stale_temps(tmp_path) == []
        assert path.exists()
    finally:
        os.close(fd)
    assert remove_stale_temps(tmp_path) == [path]
    assert not path.exists()


def test_staging_names_and_locks_its_temps(tmp_path: Path) -> None:
    final = tmp_path / "x.safetensors"
    with Staging([final], overwrite=False, protect=[]) as stage:
        temp = stage.temp(final)
        match = TEMP_NAME.fullmatch(temp.name)
        assert match and match["final"] == final.name and int(match["pid"]) == os.getpid()
        assert match["host"] == host_tag()
        fd = os.open(temp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # ours while we write it
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert remove_stale_temps(tmp_path) == [] and temp.exists()
        temp.write_bytes(b"done")
    assert final.read_bytes() == b"done"
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]

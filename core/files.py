"""Small file-system helpers every writer shares: durable renames, same-file checks, atomic text,
early writeback."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.errors import CheckpointError

NEW_FILE_MODE = 0o666  # the usual mode of a saved file; the kernel takes the umask off it
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback of the range's dirty pages, don't wait


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); folders cannot be opened for fsync on Windows."""
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the kernel to start writing these just-written bytes to disk now (Linux
    `sync_file_range`), so that the fsync at the end waits only for the last of them instead of
    all of them. Durability still comes from that fsync; elsewhere this does nothing."""
    call = _sync_file_range()
    if call is not None and nbytes > 0:
        call(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # an error only means no head start


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - a libc without it
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


def create_new(path: Path) -> int:
    """Create `path` (it must not exist) for reading and writing with the usual mode (0666 less
    the umask, like any file a user saves); returns the descriptor."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                   NEW_FILE_MODE)


def write_text(path: Path, text: str) -> None:
    """Write a small text file (a report) atomically: temp file beside it, fsync, os.replace."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"The folder '{path.parent}' does not exist; choose another place "
                              f"for '{path.name}'.")
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a new temp file beside `path` (the usual mode), fsync it, move it onto
    `path` and fsync the folder; on any error the temp file goes and `path` is untouched."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
        with contextlib.suppress(FileExistsError):
            fd = create_new(tmp)
            break
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"no free temp file name beside {path}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

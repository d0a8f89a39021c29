"""Small file-system helpers every writer shares: durable renames, same-file checks, atomic text."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.errors import CheckpointError


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


def write_text(path: Path, text: str) -> None:
    """Write a small text file (a report) atomically: temp file beside it, fsync, os.replace."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(f"The folder '{path.parent}' does not exist; choose another place "
                              f"for '{path.name}'.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

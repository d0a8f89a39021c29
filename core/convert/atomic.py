"""Atomic output: temp files beside the destination, fsync, verify, os.replace, fsync the folder.

    with Staging([final], overwrite=False, protect=[source]) as stage:
        tmp = stage.temp(final)      # an empty file in final's folder
        ...write tmp, stage.sync(tmp), verify tmp...
    # leaving the block normally moves every temp onto its final path (in the order given);
    # leaving it by any exception (Cancelled, disk full, a bug) deletes every temp.

OSErrors raised inside the block come out as a CheckpointError with a plain sentence.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from core.errors import CheckpointError
from core.files import fsync_dir, same_file

NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class Staging:
    def __init__(self, finals: Iterable[Path], *, overwrite: bool, protect: Iterable[Path],
                 create_dir: Path | None = None) -> None:
        self.finals = [Path(p) for p in finals]
        self.overwrite = overwrite
        self.temps: dict[Path, Path] = {}
        self.create_dir = create_dir  # a folder to make first (sharded output); removed on failure
        self._made_dir = False
        check_destinations(self.finals, overwrite=overwrite, protect=list(protect),
                           folder=create_dir)

    def __enter__(self) -> Staging:
        if self.create_dir is not None and not self.create_dir.exists():
            try:
                self.create_dir.mkdir()
            except OSError as exc:
                raise write_error(exc, self.create_dir) from None
            self._made_dir = True
        return self

    def temp(self, final: Path) -> Path:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial",
                                        dir=final.parent)
        except OSError as exc:
            raise write_error(exc, final) from None
        os.close(fd)
        self.temps[final] = Path(name)
        return Path(name)

    def sync(self, path: Path) -> None:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            try:
                self._commit()
                return
            except OSError as error:
                self._discard()
                raise write_error(error, self.finals[0]) from None
        self._discard()
        if isinstance(exc, OSError):
            raise write_error(exc, self.finals[0]) from None

    def _commit(self) -> None:
        with _locked(self.finals[0].parent if len(self.finals) > 1 else None):
            if self.overwrite and len(self.finals) > 1:  # shards + the index that makes them a
                with contextlib.suppress(FileNotFoundError):  # model: the old index goes first,
                    self.finals[-1].unlink()  # so a set moved in half never loads as one
            for final in self.finals:
                _move(self.temps[final], final, self.overwrite)
                del self.temps[final]  # moved: no longer ours to delete if a later move fails
            for folder in dict.fromkeys(p.parent for p in self.finals):
                fsync_dir(folder)

    def _discard(self) -> None:
        for temp in self.temps.values():
            with contextlib.suppress(OSError):
                temp.unlink()
        self.temps.clear()
        if self._made_dir and self.create_dir is not None:
            with contextlib.suppress(OSError):
                self.create_dir.rmdir()


@contextlib.contextmanager
def _locked(folder: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on `folder` while a set of files moves into it, so two writers'
    sets never interleave (POSIX flock; elsewhere, and for a single file, no lock is needed)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if folder is None or fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _move(temp: Path, final: Path, overwrite: bool) -> None:
    """os.replace; without `overwrite`, a hard link instead, which fails (EEXIST) when another
    writer created `final` since we checked, so two conversions never both claim it."""
    if overwrite:
        os.replace(temp, final)
        return
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network drives): plain rename
        os.replace(temp, final)
        return
    os.unlink(temp)


def check_destinations(finals: list[Path], *, overwrite: bool, protect: list[Path],
                       folder: Path | None = None) -> None:
    """Refuse writing onto a source, over an existing file (unless asked), or into no folder."""
    if folder is not None and folder.exists() and not folder.is_dir():
        raise CheckpointError(f"'{folder}' is a file, not a folder; choose a folder for the shards.")
    for final in finals:
        if any(same_file(final, src) for src in protect):
            raise CheckpointError(f"'{final.name}' is the file being converted; choose another "
                                  "output name (the source is never overwritten).")
        if final.is_dir():
            raise CheckpointError(f"'{final}' is a folder; choose a file name for the output.")
        if final.exists() and not overwrite:
            raise CheckpointError(f"'{final}' already exists. Choose another name, or allow "
                                  "overwriting it (--overwrite).")
        parent = folder.parent if folder is not None and final.parent == folder else final.parent
        if not parent.is_dir():
            raise CheckpointError(f"The folder '{parent}' does not exist; create it first or "
                                  "choose another output folder.")


def write_error(exc: OSError, path: Path) -> CheckpointError:
    """One plain sentence for an OSError met while writing `path`."""
    if exc.errno in NO_SPACE:
        return CheckpointError(f"The disk is full: there is not enough free space to write "
                               f"'{path.name}'. Nothing was written; free some space or choose "
                               "another folder.", str(exc))
    if exc.errno == errno.EEXIST:
        return CheckpointError(f"'{path.name}' already exists: another program wrote it while "
                               "this conversion ran. Nothing was written; choose another name, or "
                               "allow overwriting it (--overwrite).", str(exc))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(f"Checkpoint Studio may not write to '{path.parent}' (permission "
                               "denied or read-only). Nothing was written; choose another "
                               "folder.", str(exc))
    return CheckpointError(f"Writing '{path.name}' failed ({exc.strerror or exc}). Nothing was "
                           "written.", str(exc))

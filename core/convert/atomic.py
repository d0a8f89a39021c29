"""Atomic output: temp files beside the destination, fsync, verify, os.replace, fsync the folder.

    with Staging([final], overwrite=False, protect=[source]) as stage:
        tmp = stage.temp(final)      # an empty file in final's folder
        ...write tmp, stage.sync(tmp), verify tmp...
    # leaving the block normally moves every temp onto its final path (in the order given);
    # leaving it by any exception (Cancelled, disk full, a bug) deletes every temp.

OSErrors raised inside the block come out as a CheckpointError with a plain sentence.

Leftovers. A temp is named `.<final name>.<pid>-<host>-<random>.partial` (pid: the writer's process
id; host: the CRC-32 of the machine's name, 8 hex digits) and stays exclusively flock()ed by its
writer until it is moved into place or deleted. A writer killed outright (SIGKILL, power loss)
leaves it behind; entering a later Staging whose destination is in the same folder removes such
leftovers (`remove_stale_temps`), but only a regular file that matches that exact pattern, was
written on this machine, names a process that no longer exists, and whose lock can be taken at
once (the kernel drops a lock when its holder dies, so a live writer's file is never taken, even
with a reused pid). Other files, other machines' temps (a shared network folder) and, on systems
without flock (Windows), every temp are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import re
import secrets
import stat
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from core.errors import CheckpointError
from core.files import create_new, fsync_dir, same_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, so no clean-up of leftovers
    fcntl = None  # type: ignore[assignment]

NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
# `.<final name>.<pid>-<host>-<random>.partial`: nothing else (tempfile's names, other programs'
# files) matches, as their last part before `.partial` holds no '-'
TEMP_NAME = re.compile(r"\.(?P<final>.+)\.(?P<pid>[1-9][0-9]{0,9})-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}"
                       r"\.partial")


class Staging:
    def __init__(self, finals: Iterable[Path], *, overwrite: bool, protect: Iterable[Path],
                 create_dir: Path | None = None, make_parents: bool = False) -> None:
        self.finals = [Path(p) for p in finals]
        self.overwrite = overwrite
        self.temps: dict[Path, Path] = {}
        self._locks: dict[Path, int] = {}  # temp -> an fd holding its flock while it is ours
        # folders to make first, outermost first: the sharded output's own folder, and with
        # `make_parents` the missing folders above it (--out-dir); removed again on failure
        innermost = create_dir if create_dir is not None else self.finals[0].parent
        self.create_dirs = missing_folders(innermost) if make_parents else \
            [d for d in [create_dir] if d is not None and not d.exists()]
        self._made: list[Path] = []
        check_destinations(self.finals, overwrite=overwrite, protect=list(protect),
                           folder=create_dir, make_parents=make_parents)

    def __enter__(self) -> Staging:
        for folder in self.create_dirs:
            try:
                folder.mkdir()
            except FileExistsError:  # made meanwhile by another program: not ours to remove
                continue
            except OSError as exc:
                self._remove_made()
                raise write_error(exc, folder) from None
            self._made.append(folder)
        for folder in dict.fromkeys(p.parent for p in self.finals):
            remove_stale_temps(folder)  # left by writers killed earlier (see the module docstring)
        return self

    def temp(self, final: Path) -> Path:
        """A new empty file beside `final`, locked (flock) as ours until moved or deleted."""
        for _ in range(100):
            tag = f"{os.getpid()}-{host_tag()}-{secrets.token_hex(4)}"
            path = final.parent / f".{final.name}.{tag}.partial"
            try:
                fd = create_new(path)  # the usual mode, which the output keeps
            except FileExistsError:
                continue
            except OSError as exc:
                raise write_error(exc, final) from None
            break
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise write_error(OSError(errno.EEXIST, "no free temp file name"), final)
        self.temps[final] = path
        try:
            if fcntl is None:  # pragma: no cover - Windows
                raise OSError(errno.ENOLCK, "no flock")
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it, this never waits
        except OSError:  # no locks here (some network folders): nobody else can lock it either,
            os.close(fd)  # so no clean-up ever takes it
        else:
            self._locks[path] = fd
        return path

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
                self._unlock(self.temps.pop(final))  # moved: no longer ours to delete
            for folder in dict.fromkeys(p.parent for p in self.finals):
                fsync_dir(folder)

    def _discard(self) -> None:
        for temp in self.temps.values():
            with contextlib.suppress(OSError):
                temp.unlink()
            self._unlock(temp)  # after the unlink: a locked name is never free for the taking
        self.temps.clear()
        self._remove_made()

    def _remove_made(self) -> None:
        for folder in reversed(self._made):  # innermost first; one that is not empty stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._made.clear()

    def _unlock(self, temp: Path) -> None:
        fd = self._locks.pop(temp, None)
        if fd is not None:
            os.close(fd)  # releases the flock


def host_tag() -> str:
    """8 hex digits naming this machine in temp names (see the module docstring)."""
    return f"{zlib.crc32(platform.node().encode('utf-8', 'replace')):08x}"


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temps in `folder` whose writer is gone (the rules are in the module docstring);
    returns what it deleted. Best effort: a file it cannot judge or delete is left as it is."""
    if fcntl is None:  # pragma: no cover - Windows: no way to tell a live writer's file
        return []
    removed, host = [], host_tag()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = TEMP_NAME.fullmatch(entry.name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if _remove_if_unlocked(Path(entry.path)):
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (POSIX; a reused pid counts as alive)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks (never called on Windows, where it would kill)
    except (ProcessLookupError, OverflowError):  # no such process; no such pid can exist
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_if_unlocked(path: Path) -> bool:
    """Unlink `path` if it is a regular file (not a link) nobody holds the flock of."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer holds it
            return False
        now = os.lstat(path)  # still the file we locked (not renamed away and replaced)?
        if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(folder: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on `folder` while a set of files moves into it, so two writers'
    sets never interleave (POSIX flock; elsewhere, and for a single file, no lock is needed)."""
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


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and the folders above it that do not exist yet, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def check_destinations(finals: list[Path], *, overwrite: bool, protect: list[Path],
                       folder: Path | None = None, make_parents: bool = False) -> None:
    """Refuse writing onto a source, over an existing file (unless asked), or into no folder
    (with `make_parents`, missing folders are fine, a file where a folder should be is not)."""
    if folder is not None and folder.exists() and not folder.is_dir():
        raise CheckpointError(f"'{folder}' is a file, not a folder; choose a folder for the shards.")
    if make_parents:
        innermost = folder if folder is not None else finals[0].parent
        missing = missing_folders(innermost)
        existing = missing[0].parent if missing else innermost
        if not existing.is_dir():
            raise CheckpointError(f"'{existing}' is a file, not a folder; choose another output "
                                  "folder.")
        if missing:
            return  # nothing can exist yet below a missing folder
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

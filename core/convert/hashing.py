"""One sequential pass over the source file, in a thread: its hash and per-tensor checksums.

The hash identifies the source in the output's metadata: BLAKE3 by default, or sha256 (what the
Hugging Face Hub shows for a file) when asked. The same pass checksums the byte
range of every tensor that is copied verbatim from this file, so the copy itself can be done by
the kernel (`os.copy_file_range`) without this process reading those bytes a second time; the
verification compares these checksums with the ones of the bytes read back from the output.
Ranges may overlap (views of one storage). `stop()` ends the pass early (cancel, error).

Both are cryptographic. sha256 runs at 1.0-1.6 GB/s per core (SHA-NI), BLAKE3 at about 6 GB/s:
on two cores the sha256 of a 1.24 GB file costs ~0.8 s of CPU that the copy and the cast need
too, which is why BLAKE3 is the default. The pass starts before the file is even parsed (the
ranges follow with `watch`) and runs on its own core: both release the GIL while they hash, and
the kernel copy needs none. The range checksums (XXH3) cost almost nothing. The chunks the pass
reads are lent to the cast (shared_chunks.py), so the bytes that are cast are read only once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from core.convert.checksums import new_checksum
from core.convert.shared_chunks import SharedChunks
from core.errors import Cancelled, CheckpointError, CorruptFile
from core.progress import Progress

HASHES = ("blake3", "sha256")  # what can identify the source; the first is the default
BUFFER = 4 << 20  # per read: at 256 KiB the pass takes the GIL 16x as often and slowed a cast on the
# main thread by ~0.1 s per GB (its own CPU is the same from 1 to 16 MiB)


class SourceHasher:
    """The pass over `path`; `watch(ranges)` names the byte ranges to checksum, and may come after
    the pass started (the file is opened and planned meanwhile): the ranges the pass has already
    gone by are caught up by reading just them again."""

    def __init__(self, path: Path, ranges: dict[str, tuple[int, int]] | None = None,
                 progress: Progress | None = None, algorithm: str = HASHES[0]) -> None:
        self.path = Path(path)
        self.algorithm = algorithm
        self._hash = file_hash(algorithm)
        self.progress = progress  # waiting for the pass ends with Cancelled when it is cancelled
        self.ranges: dict[str, tuple[int, int]] = {}  # tensor name -> [start, end) byte range in `path`
        self.shared = SharedChunks(self.path, BUFFER)  # chunks lent to the cast (shared_chunks.py)
        self.placeholder = secrets.token_hex(32)  # same length as the digest it stands for
        self._stop = threading.Event()
        self._watched = threading.Event()
        self._digest: str | None = None
        self._checksums: dict[str, int] = {}
        self._error: Exception | None = None
        if ranges is not None:
            self.watch(ranges)
        self._thread = threading.Thread(target=self._run, name="source-hash", daemon=True)
        self._thread.start()

    def watch(self, ranges: dict[str, tuple[int, int]],
              cast: list[tuple[int, int]] | None = None) -> None:
        """Checksum these ranges too (once; before `checksums()` is asked for); lend the chunks
        that hold the `cast` byte ranges to the converting thread (`shared`)."""
        self.ranges = dict(ranges)
        self.shared.want(cast or [])
        self._watched.set()

    def _run(self) -> None:
        whole = self._hash
        ranges: _RangeChecksums | None = None
        own = bytearray(BUFFER)
        lending = False
        pos = 0
        try:
            with open(self.path, "rb", buffering=0) as f:
                while not self._stop.is_set():
                    if ranges is None and self._watched.is_set():
                        ranges = _RangeChecksums(self.ranges, f.fileno(), pos)
                        lending = self.shared.wanted
                        self.shared.start(pos)
                    buf = self.shared.slot(self._stop) if lending else own
                    if buf is None:
                        break
                    n = f.readinto(buf)
                    view = memoryview(buf)[:n]
                    whole.update(view)
                    if ranges is not None:
                        ranges.update(view, pos)
                    if lending:
                        self.shared.publish(pos, buf, n)
                    if not n:
                        break
                    pos += n
                if ranges is None:  # a small file, done before its ranges were named
                    while not (self._watched.wait(0.05) or self._stop.is_set()):
                        pass
                    ranges = _RangeChecksums(self.ranges, f.fileno(), pos)
                if not self._stop.is_set():
                    self._checksums, self._digest = ranges.digests(), whole.hexdigest()
        except Exception as exc:  # reported by digest()/checksums() in the caller's thread
            self._error = exc
        finally:
            self.shared.end()

    def digest(self) -> str:
        self._join()
        assert self._digest is not None
        return self._digest

    def checksums(self) -> dict[str, int]:
        """The checksum of each range, once the pass is complete."""
        self._join()
        return self._checksums

    def stop(self) -> None:
        self._stop.set()
        self.shared.close()
        self._thread.join()

    def _join(self) -> None:
        self.shared.close()  # whoever waits for the result is done casting
        while self._thread.is_alive():  # a slow disk can keep the pass going long after the copy
            self._thread.join(0.05)
            if self.progress is not None and self.progress.cancelled():
                self.stop()
                raise Cancelled()
        if isinstance(self._error, OSError):
            raise CheckpointError(f"The source file '{self.path.name}' could not be read.",
                                  str(self._error))
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise Cancelled()


def file_hash(algorithm: str) -> Any:
    """A new incremental hash (`.update`, `.hexdigest()`: 64 hex digits) of one of `HASHES`."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        import blake3

        return blake3.blake3()
    raise CheckpointError(f"'{algorithm}' is not a way to identify the source; use one of: "
                          f"{', '.join(HASHES)}.")


class _RangeChecksums:
    """Checksums of possibly overlapping byte ranges, fed the file's bytes in order."""

    def __init__(self, ranges: dict[str, tuple[int, int]], fd: int | None = None, done: int = 0) -> None:
        """`done`: the bytes before it went by already; what of the ranges lies there is read
        again from the open file `fd` (a few MB at most: the time it takes to plan the job)."""
        self.running = {name: new_checksum() for name in ranges}
        self._todo = sorted(ranges.items(), key=lambda kv: kv[1][0])
        self._next = 0
        self._active: list[tuple[str, tuple[int, int]]] = []
        while self._next < len(self._todo) and self._todo[self._next][1][0] < done:
            name, (lo, hi) = self._todo[self._next]
            assert fd is not None
            for at in range(lo, min(hi, done), BUFFER):
                want = min(BUFFER, min(hi, done) - at)
                piece = os.pread(fd, want, at)
                if len(piece) < want:  # regular files give all bytes up to their end
                    raise CorruptFile("The file is shorter than its own index says; it is "
                                      "probably truncated.", f"{name}: no bytes at {at}")
                self.running[name].update(piece)
            if hi > done:
                self._active.append((name, (lo, hi)))
            self._next += 1

    def update(self, view: memoryview, pos: int) -> None:
        end = pos + len(view)
        while self._next < len(self._todo) and self._todo[self._next][1][0] < end:
            self._active.append(self._todo[self._next])
            self._next += 1
        still = []
        for name, (lo, hi) in self._active:
            a, b = max(lo, pos), min(hi, end)
            if a < b:
                self.running[name].update(view[a - pos:b - pos])
            if hi > end:
                still.append((name, (lo, hi)))
        self._active = still

    def digests(self) -> dict[str, int]:
        return {name: running.intdigest() for name, running in self.running.items()}

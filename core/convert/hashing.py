"""One sequential pass over the source file, in a thread: its sha256 and per-tensor CRC-32s.

The sha256 identifies the source in the output's metadata. The same pass checksums the byte
range of every tensor that is copied verbatim from this file, so the copy itself can be done by
the kernel (`os.copy_file_range`) without this process reading those bytes a second time; the
verification compares these checksums with the ones of the bytes read back from the output.
Ranges may overlap (views of one storage). `stop()` ends the pass early (cancel, error).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import zlib
from pathlib import Path

from core.errors import Cancelled, CheckpointError
from core.progress import Progress

BUFFER = 8 << 20


class SourceHasher:
    def __init__(self, path: Path, ranges: dict[str, tuple[int, int]] | None = None,
                 progress: Progress | None = None) -> None:
        self.path = Path(path)
        self.progress = progress  # waiting for the pass ends with Cancelled when it is cancelled
        self.ranges = dict(ranges or {})  # tensor name -> [start, end) byte range in `path`
        self.placeholder = secrets.token_hex(32)  # same length as the digest it stands for
        self._stop = threading.Event()
        self._digest: str | None = None
        self._crcs: dict[str, int] = {}
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="source-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sha = hashlib.sha256()
        ranges = _RangeCrcs(self.ranges)
        buf = bytearray(BUFFER)
        pos = 0
        try:
            with open(self.path, "rb", buffering=0) as f:
                while not self._stop.is_set():
                    n = f.readinto(buf)
                    if not n:
                        self._crcs, self._digest = ranges.crcs, sha.hexdigest()
                        return
                    view = memoryview(buf)[:n]
                    sha.update(view)
                    ranges.update(view, pos)
                    pos += n
        except Exception as exc:  # reported by digest()/crcs() in the caller's thread
            self._error = exc

    def digest(self) -> str:
        self._join()
        assert self._digest is not None
        return self._digest

    def crcs(self) -> dict[str, int]:
        """CRC-32 of each range, once the pass is complete."""
        self._join()
        return self._crcs

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _join(self) -> None:
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


class _RangeCrcs:
    """CRC-32 of possibly overlapping byte ranges, fed the file's bytes in order."""

    def __init__(self, ranges: dict[str, tuple[int, int]]) -> None:
        self.crcs = dict.fromkeys(ranges, 0)
        self._todo = sorted(ranges.items(), key=lambda kv: kv[1][0])
        self._next = 0
        self._active: list[tuple[str, tuple[int, int]]] = []

    def update(self, view: memoryview, pos: int) -> None:
        end = pos + len(view)
        while self._next < len(self._todo) and self._todo[self._next][1][0] < end:
            self._active.append(self._todo[self._next])
            self._next += 1
        still = []
        for name, (lo, hi) in self._active:
            a, b = max(lo, pos), min(hi, end)
            if a < b:
                self.crcs[name] = zlib.crc32(view[a - pos:b - pos], self.crcs[name])
            if hi > end:
                still.append((name, (lo, hi)))
        self._active = still

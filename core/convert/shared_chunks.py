"""The source hash pass lends its chunks to the cast, so a cast conversion reads its source once.

The pass (hashing.py) reads the source in order, one chunk at a time, into one of a few slots. A
chunk that holds bytes the conversion will cast is published after it is hashed, and the
converting thread casts straight from it (`piece`) instead of reading those bytes a second time
(a 1.24 GB float32 -> bfloat16 conversion: ~0.25 s less CPU, ~0.15 s less time on 2 cores).
The converting thread gives a chunk back when it asks for bytes past it; the pass waits for a free
slot, so it stays at most `SLOTS` chunks ahead.

Nothing depends on the order the converting thread asks in: bytes the pass went by before the
sharing began, or that were given back, or that the pass never reaches (stopped, end of file) are
answered with None, and the caller reads them itself. The hash covers exactly the bytes cast.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import deque
from pathlib import Path

SLOTS = 4  # chunks the pass may hold: a 4 MiB chunk casts in ~2 ms, so the pass rarely waits


class SharedChunks:
    """The chunks the pass over `path` lends out; their slots are made when some are `want`ed."""

    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = os.path.abspath(path)
        self.chunk_size = chunk_size
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._cond = threading.Condition()
        self._free: list[bytearray] = []
        self._published: deque[tuple[int, bytearray, int]] = deque()  # (start, slot, nbytes)
        self._passed = -1  # the pass has read [0, _passed): -1 until it starts sharing
        self._ended = False  # the pass ends: no more chunks come
        self._closed = False  # no more pieces are asked for: the pass keeps no chunk

    def want(self, ranges: list[tuple[int, int]]) -> None:
        """The [start, end) byte ranges that will be cast; before the pass `start`s sharing."""
        self._starts, self._ends = _merged(ranges)
        self._free = [bytearray(self.chunk_size) for _ in range(SLOTS)] if ranges else []

    @property
    def wanted(self) -> bool:
        return bool(self._starts)

    # the pass's side
    def start(self, pos: int) -> None:
        with self._cond:
            self._passed = pos
            self._cond.notify_all()

    def slot(self, stopped: threading.Event) -> bytearray | None:
        """A free slot to read the next chunk into; None once the pass is stopped."""
        with self._cond:
            while not self._free and not self._closed and not stopped.is_set():
                self._cond.wait(0.1)
            if stopped.is_set():
                return None
            return self._free.pop()  # closed: every slot but the one the pass held is free

    def publish(self, start: int, slot: bytearray, nbytes: int) -> None:
        """The chunk [start, start+nbytes) is hashed: lend it out if the cast wants any of it."""
        with self._cond:
            if not self._closed and nbytes and self._overlaps(start, start + nbytes):
                self._published.append((start, slot, nbytes))
            else:
                self._free.append(slot)
            self._passed = start + nbytes
            self._cond.notify_all()

    def end(self) -> None:
        """The pass is over (end of file, stopped, failed): what is published stays readable."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more pieces will be asked for: every slot is free again."""
        with self._cond:
            self._closed = True
            self._free.extend(slot for _, slot, _ in self._published)
            self._published.clear()
            self._cond.notify_all()

    # the converting thread's side
    def piece(self, at: int, end: int, size: int) -> memoryview | None:
        """The source's bytes from `at` to `end` or to the end of their chunk, whole `size`-byte
        elements only, waiting for the pass to get there; None: read them yourself."""
        if not self._overlaps(at, at + 1):
            return None
        with self._cond:
            while True:
                self._give_back_before(at)  # also what the pass lent while this waited
                for start, slot, nbytes in self._published:
                    if start <= at < start + nbytes:
                        stop = min(end, start + nbytes)
                        stop -= (stop - at) % size
                        return memoryview(slot)[at - start:stop - start] if stop > at else None
                if self._ended or self._closed or at < self._passed:
                    return None
                self._cond.wait(0.1)

    def _give_back_before(self, at: int) -> None:
        while self._published and self._published[0][0] + self._published[0][2] <= at:
            self._free.append(self._published.popleft()[1])
            self._cond.notify_all()

    def _overlaps(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self._starts, lo) - 1
        if i >= 0 and self._ends[i] > lo:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] < hi


def _merged(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted disjoint [start, end) runs covering `ranges` (views of one storage overlap)."""
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in sorted(ranges):
        if ends and lo <= ends[-1]:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    return starts, ends

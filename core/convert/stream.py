"""Each tensor's output bytes, streamed with memory bounded by the chunk size.

Three paths, cheapest first:
- verbatim: a contiguous little-endian tensor stored as plain bytes in the source file itself, no
  cast -> the kernel copies the byte range (`os.copy_file_range`; else reads and writes through
  one reused buffer); the source hasher checksums the range in its own pass;
- raw: the same from another file (a shard) -> read into one reused buffer, checksum, write;
- chunked cast: the same layouts but cast to another float type -> `cast_bytes` casts one chunk
  at a time with numpy (no torch, cast.py), bit for bit what torch's `tensor.to` writes;
  the chunks come from the source hasher's pass when it lends them (shared_chunks.py), else from
  our own reads; the precision check counts each cast chunk;
- decoded: a whole storage that a reader decodes (GGUF dequantised, ONNX typed values, zip
  records) -> `storage_bytes`, cast with `cast_bytes`; no torch;
- tensor: anything else (views, big-endian, quantized tensors) -> `read_tensor`, cast,
  `.contiguous()`, then sliced; memory is one tensor.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.convert.cast import cast_bytes, tensor_bytes, torch_dtype
from core.convert.checksums import new_checksum
from core.convert.transforms import CASTABLE, Item
from core.dtypes import itemsize
from core.errors import CorruptFile
from core.files import start_writeback
from core.model import TensorInfo
from core.progress import Progress, step

if TYPE_CHECKING:  # pragma: no cover
    from core.convert.precision import PrecisionCounter
    from core.convert.shared_chunks import SharedChunks

__all__ = ["SourceReader", "Meter", "cast_bytes", "tensor_bytes", "torch_dtype"]  # the casts: cast.py

CHUNK = 16 << 20  # ~10-50 ms of disk work: cancel stays responsive, memory stays flat
CAST_CHUNK = 4 << 20  # per cast chunk: 4 MiB in + 2 MiB out measured fastest (1.3 s vs 1.7 s at 1 MiB
# for 1.24 GB to bf16: fewer per-chunk steps), 8 MiB slower again (out of cache)
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                   errno.EPERM, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


class Meter:
    """Counts bytes done over a total and reports them through the progress contract."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, max(total, 1), 0

    def add(self, nbytes: int, text: str) -> None:
        """Count `nbytes` more and report; raises `Cancelled` when the user asked to stop."""
        self.done += nbytes
        step(self.progress, min(self.done, self.total), self.total, text)


class SourceReader:
    """Keeps source files open; writes each item's output bytes into the output file.

    Items named in `verbatim` are checksummed by the source hasher (hashing.py), so their bytes
    are copied by the kernel without passing through this process.
    """

    def __init__(self, verbatim: set[str] | frozenset[str] = frozenset(),
                 chunk: int | None = None, precision: PrecisionCounter | None = None,
                 shared: SharedChunks | None = None) -> None:
        self.chunk = chunk or CHUNK
        self.verbatim = verbatim
        self.precision = precision  # counts what each cast chunk overflows or flushes
        self.shared = shared  # the chunks the source's hash pass lends out: no second read
        # made at first use: zeroing 16 MiB that a cast-only or copy-only job never reads costs
        # ~40 ms of page faults
        self._buf = bytearray()  # read's buffer
        self._slot = bytearray()  # read_full's buffer
        self._cast_out = bytearray()  # a float32 -> bfloat16 chunk's output
        self._files: dict[Path, IO[bytes]] = {}
        self.kernel_copy = hasattr(os, "copy_file_range")

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def write(self, item: Item, out: Any, pos: int, meter: Meter) -> int | None:
        """Write `item`'s bytes into `out` at `pos`; their checksum, or None for verbatim items.

        The kernel is asked to start writing each chunk to disk at once, so the fsync at the end
        only waits for the last few.
        """
        text = f"writing {item.name}"
        if item.name in self.verbatim:
            self._copy(item.source, out, pos, meter, text)
            return None
        digest = new_checksum()
        out.seek(pos)
        for part in self.chunks(item):
            write_all(out, part)
            digest.update(part)
            start_writeback(out.fileno(), pos, len(part))
            pos += len(part)
            meter.add(len(part), text)
        if not item.nbytes:
            meter.add(0, text)
        return digest.intdigest()

    def _copy(self, info: TensorInfo, out: Any, pos: int, meter: Meter, text: str) -> None:
        assert info.storage is not None
        path, start = info.storage.path, byte_start(info)
        for off in range(0, info.nbytes, self.chunk):
            n = min(self.chunk, info.nbytes - off)
            done = self._kernel_copy(self._file(path), out, n, start + off, pos + off)
            if done < n:  # no kernel copy here: through our buffer
                out.seek(pos + off + done)
                for part in self.read(path, start + off + done, n - done):
                    write_all(out, part)
            start_writeback(out.fileno(), pos + off, n)
            meter.add(n, text)

    def _kernel_copy(self, src: IO[bytes], out: Any, n: int, src_at: int, out_at: int) -> int:
        done = 0
        while self.kernel_copy and done < n:
            try:
                got = copy_range(src.fileno(), out.fileno(), n - done, src_at + done, out_at + done)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                self.kernel_copy = False  # another filesystem or OS: plain writes from now on
                break
            if got == 0:
                raise CorruptFile("The file is shorter than its own index says; it is probably "
                                  "truncated.", f"no bytes at {src_at + done}")
            done += got
        return done

    def chunks(self, item: Item) -> Iterator[memoryview]:
        """`item`'s output bytes a chunk at a time; a chunk is a view into a reused buffer, valid
        until the next one is asked for."""
        info = item.source
        if is_decoded_whole(info):
            yield from self._decoded_chunks(item)
            return
        if not is_raw_contiguous(info):
            yield from _tensor_chunks(item, self.chunk, self.precision)
            return
        assert info.storage is not None
        start, path = byte_start(info), info.storage.path
        if not item.cast:
            yield from self.read(path, start, info.nbytes)
            return
        yield from self._cast_chunks(item, path, start)

    def _cast_chunks(self, item: Item, path: Path, start: int) -> Iterator[memoryview]:
        """Cast a chunk at a time, small enough that its bytes are still in a CPU cache when cast.
        In this thread: a cast thread one chunk ahead measured slower (1.7-2.0 s against 1.4 s
        for a 1.24 GB bf16 convert on 2 cores), as it competes with the source hasher's thread."""
        size = itemsize(item.source.dtype)
        step_bytes = max(min(self.chunk, CAST_CHUNK) // size, 1) * size
        lent = self.shared if self.shared and self.shared.path == os.path.abspath(path) else None
        at, end = start, start + item.source.nbytes
        while at < end:
            piece = lent.piece(at, end, size) if lent is not None else None
            if piece is None:
                piece = self.read_full(path, at, min(step_bytes, end - at))
            at += len(piece)
            yield self._cast(item, piece)

    def _decoded_chunks(self, item: Item) -> Iterator[memoryview]:
        """A decoded storage (GGUF dequantised, ONNX typed values) as bytes, cast with numpy when
        asked: torch is never imported for these; memory is one tensor, as on the torch path."""
        from core.tensor_io import storage_bytes

        info = item.source
        assert info.storage is not None
        data = memoryview(storage_bytes(info.storage))
        if not item.cast:
            for offset in range(0, len(data), self.chunk):
                yield data[offset:offset + self.chunk]
            return
        step_bytes = max(CAST_CHUNK // itemsize(info.dtype), 1) * itemsize(info.dtype)
        for offset in range(0, len(data), step_bytes):
            yield self._cast(item, data[offset:offset + step_bytes])

    def _cast(self, item: Item, source: memoryview) -> memoryview:
        if not self._cast_out:
            self._cast_out = bytearray(CAST_CHUNK // 2)
        if self.precision is None or not self.precision.covers(item):
            return cast_bytes(source, item.source.dtype, item.dtype, into=self._cast_out)
        bounds: list[int] = []
        out = cast_bytes(source, item.source.dtype, item.dtype, bounds, self._cast_out)
        self.precision.add(item, source, out, bounds)
        return out

    def read(self, path: Path, start: int, nbytes: int) -> Iterator[memoryview]:
        """The bytes [start, start+nbytes) of `path` as views into one reused buffer."""
        if not self._buf:
            self._buf = bytearray(self.chunk)
        f = self._file(path)
        f.seek(start)
        view = memoryview(self._buf)
        left = nbytes
        while left > 0:
            n = f.readinto(view[:min(left, len(view))])  # type: ignore[attr-defined]
            if not n:
                raise CorruptFile("The file is shorter than its own index says; it is probably "
                                  "truncated.", f"{path}: {left} bytes missing at {f.tell()}")
            left -= n
            yield view[:n]

    def read_full(self, path: Path, start: int, nbytes: int) -> memoryview:
        """The bytes [start, start+nbytes) of `path` as one view into a reused buffer (a cast
        needs whole elements, which a short read could split)."""
        if nbytes > len(self._slot):
            self._slot = bytearray(nbytes)
        f = self._file(path)
        f.seek(start)
        view = memoryview(self._slot)[:nbytes]
        got = 0
        while got < nbytes:
            n = f.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise CorruptFile("The file is shorter than its own index says; it is probably "
                                  "truncated.", f"{path}: {nbytes - got} bytes missing at {f.tell()}")
            got += n
        return view

    def _file(self, path: Path) -> IO[bytes]:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in __exit__
        return f


def copy_range(src_fd: int, dst_fd: int, count: int, src_at: int, dst_at: int) -> int:
    """One kernel copy call (a seam for tests that simulate a full disk)."""
    return os.copy_file_range(src_fd, dst_fd, count, src_at, dst_at)


def write_all(out: Any, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n:]


def mapped(path: Path, start: int, nbytes: int, window: int | None = None) -> Iterator[memoryview]:
    """Read-only views of [start, start+nbytes) through a sliding memory map (no copy).

    Used to read back our own output; a window is unmapped before the next, so RSS stays small.
    """
    window = window or 4 * CHUNK
    with open(path, "rb") as f:
        end = start + nbytes
        while start < end:
            base = start - start % mmap.ALLOCATIONGRANULARITY
            n = min(window, end - start)
            mm = mmap.mmap(f.fileno(), start - base + n, offset=base, access=mmap.ACCESS_READ)
            _populate(mm)
            with mm, memoryview(mm) as whole, whole[start - base:] as view:
                yield view
            start += n


_MADV_POPULATE_READ = 22  # Linux 5.14+: map the window's cached pages in one call


def _populate(mm: mmap.mmap) -> None:
    """Map a window's pages at once instead of one page fault at a time (~10% less CPU to read
    back a file from the page cache); older kernels and other systems just fault them in."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            mm.madvise(_MADV_POPULATE_READ)


def verbatim_ranges(path: Path, items: list[Item]) -> dict[str, tuple[int, int]]:
    """Items copied byte for byte from the file `path`: name -> its [start, end) in that file."""
    target = os.path.abspath(path)
    return {i.name: (byte_start(i.source), byte_start(i.source) + i.nbytes) for i in items
            if not i.cast and i.nbytes and is_raw_contiguous(i.source)
            and os.path.abspath(i.source.storage.path) == target}  # type: ignore[union-attr]


def cast_ranges(path: Path, items: list[Item]) -> list[tuple[int, int]]:
    """The byte ranges of the file `path` that are cast a chunk at a time (`_cast_chunks`), when
    their elements line up with the hash pass's chunks (a multiple of 8 bytes apart)."""
    target = os.path.abspath(path)
    return [(byte_start(i.source), byte_start(i.source) + i.source.nbytes) for i in items
            if i.cast and i.source.nbytes and is_raw_contiguous(i.source)
            and byte_start(i.source) % itemsize(i.source.dtype) == 0
            and os.path.abspath(i.source.storage.path) == target]  # type: ignore[union-attr]


def is_raw_contiguous(info: TensorInfo) -> bool:
    """True when the tensor's bytes are one plain little-endian run inside its storage."""
    storage = info.storage
    if storage is None or storage.encoding != "raw":
        return False
    if storage.byteorder != "little" and itemsize(info.dtype) > 1:
        return False
    if info.stride is not None:
        pairs = zip(info.shape, info.stride, info.contiguous_stride, strict=True)
        if any(dim > 1 and got != want for dim, got, want in pairs):
            return False
    start = byte_start(info)
    if start < storage.offset or start + info.nbytes > storage.offset + storage.nbytes:
        raise CorruptFile(f"The tensor '{info.name}' points outside its stored data; the file is "
                          "damaged.", f"bytes {start}..{start + info.nbytes} of {storage}")
    return True


def is_decoded_whole(info: TensorInfo) -> bool:
    """True when a decoded (not "raw") storage's bytes are the tensor's bytes, all of them, in order,
    little-endian, of a plain type torch reads the same way."""
    storage = info.storage
    if storage is None or storage.encoding == "raw" or info.quantization is not None:
        return False
    if storage.dtype != info.dtype or info.dtype not in _PLAIN_DTYPES or info.storage_offset:
        return False
    if storage.byteorder != "little" and itemsize(info.dtype) > 1:
        return False
    if info.stride is not None:
        pairs = zip(info.shape, info.stride, info.contiguous_stride, strict=True)
        if any(dim > 1 and got != want for dim, got, want in pairs):
            return False
    return info.nbytes == storage.nbytes


def byte_start(info: TensorInfo) -> int:
    assert info.storage is not None
    return info.storage.offset + info.storage_offset * itemsize(info.dtype)


_PLAIN_DTYPES = CASTABLE | {"int64", "int32", "int16", "int8", "uint8", "bool"}


def _tensor_chunks(item: Item, chunk: int, precision: PrecisionCounter | None) -> Iterator[memoryview]:
    from core.tensor_io import read_tensor

    tensor = read_tensor(item.source)
    if item.cast:
        source, tensor = tensor, tensor.to(torch_dtype(item.dtype))
        if precision is not None and precision.covers(item):
            precision.add_tensors(item, source.contiguous(), tensor)
        del source
    data = tensor_bytes(tensor)
    for offset in range(0, len(data), chunk):
        yield data[offset:offset + chunk]

"""Each tensor's output bytes, streamed with memory bounded by the chunk size.

Three paths, cheapest first:
- verbatim: a contiguous little-endian tensor stored as plain bytes in the source file itself, no
  cast -> the kernel copies the byte range (`os.copy_file_range`; else reads and writes through
  one reused buffer); the source hasher checksums the range in its own pass;
- raw: the same from another file (a shard) -> read into one reused buffer, checksum, write;
- chunked cast: the same layouts but cast to another float type -> `cast_bytes` casts one chunk
  at a time with numpy + ml_dtypes (no torch), bit for bit what torch's `tensor.to` writes;
- decoded: a whole storage that a reader decodes (GGUF dequantised, ONNX typed values, zip
  records) -> `storage_bytes`, cast with `cast_bytes`; no torch;
- tensor: anything else (views, big-endian, quantized tensors) -> `read_tensor`, cast,
  `.contiguous()`, then sliced; memory is one tensor.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.convert.checksums import new_checksum
from core.convert.transforms import CASTABLE, Item
from core.dtypes import itemsize
from core.errors import CorruptFile
from core.files import start_writeback
from core.model import TensorInfo
from core.progress import Progress, step

CHUNK = 16 << 20  # ~10-50 ms of disk work: cancel stays responsive, memory stays flat
CAST_CHUNK = 1 << 20
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
                 chunk: int | None = None) -> None:
        self.chunk = chunk or CHUNK
        self.verbatim = verbatim
        self._buf = bytearray(self.chunk)
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
        info = item.source
        if is_decoded_whole(info):
            yield from self._decoded_chunks(item)
            return
        if not is_raw_contiguous(info):
            yield from _tensor_chunks(item, self.chunk)
            return
        assert info.storage is not None
        start, path = byte_start(info), info.storage.path
        if not item.cast:
            yield from self.read(path, start, info.nbytes)
            return
        # casts read less at a time: the bytes are still in the CPU cache when they are cast
        step_bytes = max(min(self.chunk, CAST_CHUNK) // itemsize(info.dtype), 1) * itemsize(info.dtype)
        for offset in range(0, info.nbytes, step_bytes):
            n = min(step_bytes, info.nbytes - offset)
            yield cast_bytes(self.read_full(path, start + offset, n), info.dtype, item.dtype)

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
            yield cast_bytes(data[offset:offset + step_bytes], info.dtype, item.dtype)

    def read(self, path: Path, start: int, nbytes: int) -> Iterator[memoryview]:
        """The bytes [start, start+nbytes) of `path` as views into one reused buffer."""
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
        """The bytes [start, start+nbytes) of `path` as one view into the reused buffer (a cast
        needs whole elements, which a short read could split)."""
        if nbytes > len(self._buf):
            self._buf = bytearray(nbytes)
        f = self._file(path)
        f.seek(start)
        view = memoryview(self._buf)[:nbytes]
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
            with mm, memoryview(mm) as whole, whole[start - base:] as view:
                yield view
            start += n


def verbatim_ranges(path: Path, items: list[Item]) -> dict[str, tuple[int, int]]:
    """Items copied byte for byte from the file `path`: name -> its [start, end) in that file."""
    target = os.path.abspath(path)
    return {i.name: (byte_start(i.source), byte_start(i.source) + i.nbytes) for i in items
            if not i.cast and i.nbytes and is_raw_contiguous(i.source)
            and os.path.abspath(i.source.storage.path) == target}  # type: ignore[union-attr]


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


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


# The NaN bits torch writes (its vectorised CPU loop) where numpy/ml_dtypes write others, per
# (src, dst): ("f16", _) -> sign | quiet | the top 10 payload bits of the float32 on the way;
# ("set", bits) -> those bits; ("or", bit) -> the quiet bit added. Every other value already
# matches. Checked against torch for every 16-bit pattern and every float32 one (to float16 and
# bfloat16); tests/core/test_cast_bits.py holds us to it.
_NAN_RULES: dict[tuple[str, str], tuple[str, int]] = {
    ("float64", "float16"): ("f16", 0), ("float32", "float16"): ("f16", 0),
    ("bfloat16", "float16"): ("f16", 0),
    ("float64", "bfloat16"): ("set", 0xFFFF), ("float32", "bfloat16"): ("set", 0xFFFF),
    ("float16", "bfloat16"): ("set", 0x7FC0),
    ("float16", "float32"): ("or", 1 << 22), ("float16", "float64"): ("or", 1 << 51),
}
# torch casts float64 and the 16-bit types to a 16-bit type through float32 (two roundings)
_THROUGH_F32 = {("float64", "float16"), ("float64", "bfloat16"), ("float16", "bfloat16"),
                ("bfloat16", "float16")}
_UINT = {8: "uint64", 4: "uint32", 2: "uint16"}
_PLAIN_DTYPES = CASTABLE | {"int64", "int32", "int16", "int8", "uint8", "bool"}
_BLOCK = 1 << 16  # elements: 256 KiB of float32, stays in the CPU cache between the steps


def cast_bytes(data: memoryview | bytes | bytearray, src: str, dst: str) -> memoryview:
    """Native-order `src` floats in `data` as `dst` floats, bit for bit what `tensor.to(dst)` writes
    on the CPU: round to nearest even, subnormals kept, overflow to ±inf, torch's NaN bits.

    Both types are one of `CASTABLE` (float64/32/16, bfloat16). numpy + ml_dtypes, no torch.
    """
    import numpy as np

    if src not in CASTABLE or dst not in CASTABLE:
        raise ValueError(f"cannot cast {src} to {dst}: only {sorted(CASTABLE)}")
    values = np.frombuffer(data, dtype=_np_dtype(src))
    if src == dst:
        return memoryview(values.copy().view(np.uint8))
    if (src, dst) == ("float32", "bfloat16"):  # the common case, done faster
        return memoryview(_f32_to_bf16(values).view(np.uint8))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is the answer wanted
        if (src, dst) in _THROUGH_F32:
            values = values.astype(np.float32)
        out = values.astype(_np_dtype(dst))
    rule = _NAN_RULES.get((src, dst))
    if rule is not None and values.size:
        nan = np.isnan(values)  # `values` is never bfloat16 here
        if nan.any():
            _fix_nans(out, values, nan, rule)
    return memoryview(out.view(np.uint8))


def _f32_to_bf16(values: Any) -> Any:
    """float32 -> bfloat16 bits, in cache-sized blocks (3x faster than ml_dtypes' element loop):
    round to nearest even by adding 0x7FFF plus the lowest kept bit and keeping the top 16 bits;
    NaNs become 0xFFFF, as torch writes them (`_NAN_RULES`)."""
    import numpy as np

    bits = values.view(np.uint32)
    out = np.empty(bits.size, dtype=np.uint16)
    block = np.empty(min(bits.size, _BLOCK), dtype=np.uint32)
    for at in range(0, bits.size, _BLOCK):
        part = bits[at:at + _BLOCK]
        tmp = block[:part.size]
        np.bitwise_and(part, 0x7FFFFFFF, out=tmp)
        nan = tmp > 0x7F800000 if (tmp.max(initial=0) > 0x7F800000) else None
        np.right_shift(part, 16, out=tmp)
        np.bitwise_and(tmp, 1, out=tmp)
        tmp += 0x7FFF
        tmp += part  # wraps only for NaNs, which are replaced below
        tmp >>= 16
        if nan is not None:
            tmp[nan] = 0xFFFF
        out[at:at + part.size] = tmp
    return out


def _fix_nans(out: Any, values: Any, nan: Any, rule: tuple[str, int]) -> None:
    import numpy as np

    kind, arg = rule
    bits = out.view(_UINT[out.itemsize])
    if kind == "set":
        bits[nan] = arg
    elif kind == "or":
        bits[nan] |= np.array(arg, dtype=bits.dtype)
    else:  # float32 bits -> float16 NaN
        f32 = values[nan].view(np.uint32)
        bits[nan] = (((f32 >> 16) & 0x8000) | 0x7E00 | ((f32 >> 13) & 0x3FF)).astype(np.uint16)


def _np_dtype(name: str) -> Any:
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def tensor_bytes(tensor: Any) -> memoryview:
    """A contiguous torch tensor's bytes, without a copy when it is already contiguous."""
    import torch

    if tensor.is_quantized:  # its stored integers (view(uint8) of a quantized tensor crashes torch)
        tensor = tensor.int_repr()
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def _tensor_chunks(item: Item, chunk: int) -> Iterator[memoryview]:
    from core.tensor_io import read_tensor

    tensor = read_tensor(item.source)
    if item.cast:
        tensor = tensor.to(torch_dtype(item.dtype))
    data = tensor_bytes(tensor)
    for offset in range(0, len(data), chunk):
        yield data[offset:offset + chunk]

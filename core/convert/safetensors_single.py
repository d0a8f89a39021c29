"""Target: one .safetensors file, streamed by hand (torch only for views of tensors; casts use
numpy).

The format (as the library writes it): 8-byte little-endian header length N; N bytes of UTF-8
JSON `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}`
padded with spaces to a multiple of 8; then every tensor's raw little-endian bytes, back to back.
Tensors are laid out largest item size first (like the library) so each stays aligned.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.convert.atomic import Staging
from core.convert.job import Job
from core.convert.metadata import RECORD_KEY, recorded_digest
from core.convert.stream import Meter, SourceReader, write_all
from core.convert.transforms import Item
from core.convert.verify import Written, compare, read_back, verify_header
from core.dtypes import TO_SAFETENSORS, itemsize
from core.errors import CheckpointError
from core.formats.safetensors import MAX_HEADER

STREAMS = True
NAME = "safetensors"
SUFFIX = ".safetensors"


def default_name(stem: str) -> str:
    return stem + SUFFIX


def write(job: Job, destination: Path) -> list[Path]:
    with Staging([destination], overwrite=job.overwrite, protect=job.protect,
                 make_parents=job.create_folders) as stage:
        with SourceReader(set(job.hasher.ranges), precision=job.precision,
                          shared=job.hasher.shared) as reader:
            staged = write_file(stage.temp(destination), ordered(job.plan.items), job.metadata(),
                                reader, job.meter)
        verify_and_finish(stage, [staged], job)
    return [destination]


def ordered(items: list[Item]) -> list[Item]:
    """Largest item size first (stable): every tensor starts on a multiple of its item size."""
    return sorted(items, key=lambda i: -itemsize(i.dtype))


def header_bytes(items: list[Item], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for item in items:
        code = TO_SAFETENSORS.get(item.dtype)
        if code is None:
            raise CheckpointError(f"safetensors cannot store tensors of type {item.dtype} (tensor "
                                  f"'{item.name}'); convert to .pt instead, or drop that tensor.")
        header[item.name] = {"dtype": code, "shape": list(item.source.shape),
                             "data_offsets": [offset, offset + item.nbytes]}
        offset += item.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER:
        raise CheckpointError("Too many tensors or too much metadata for one safetensors header "
                              "(100 MB at most); write sharded output instead.")
    return raw


@dataclass
class Staged:
    """A temp file whose tensors are written; its header still holds the source hash placeholder."""

    path: Path
    written: list[Written]
    patch_at: int  # where the placeholder sits (-1: none)


def write_file(path: Path, items: list[Item], metadata: dict[str, str], reader: SourceReader,
               meter: Meter) -> Staged:
    """Stream `items` into the empty temp file `path`."""
    head = header_bytes(items, metadata)
    written = []
    with open(path, "r+b", buffering=0) as f:  # the empty temp file; no O_TRUNC: on ext4 a
        # truncate-then-close starts writeback at close, which the fsync below does anyway
        write_all(f, len(head).to_bytes(8, "little") + head)
        pos = 8 + len(head)
        for item in items:
            digest = reader.write(item, f, pos, meter)
            written.append(Written(item.name, item.dtype, item.source.shape, item.nbytes, digest,
                                   pos))
            pos += item.nbytes
        if f.seek(0, os.SEEK_END) != pos:  # pragma: no cover - a reader bug, caught before saving
            raise CheckpointError("The written file came out with the wrong size.",
                                  f"{f.tell()} bytes instead of {pos}")
    return Staged(path, written, _placeholder_at(head, metadata))


def verify_and_finish(stage: Staging, files: list[Staged], job: Job) -> None:
    """Read every file back and check its bytes, then put the source hash in the headers,
    fsync once, and have the library check each header.

    The bytes are read back from the page cache while the source hash may still be running;
    a verbatim tensor's checksum comes from that same pass over the source (hashing.py).
    """
    found = [read_back(f.path, f.written, job.meter) for f in files]
    source_digests = job.hasher.checksums()
    for staged, got in zip(files, found, strict=True):
        compare(staged.path, staged.written, got, source_digests)
    metadata = job.metadata(job.hasher.digest())
    for staged in files:
        patch(staged.path, staged.patch_at, job.hasher.digest())
        stage.sync(staged.path)
        verify_header(staged.path, staged.written, metadata)


def _placeholder_at(head: bytes, metadata: dict[str, str]) -> int:
    token = recorded_digest(metadata.get(RECORD_KEY, ""))
    return 8 + head.index(token.encode()) if token else -1


def patch(path: Path, at: int, digest: str) -> None:
    """Write the source hash over its placeholder (same length, so the header keeps its size)."""
    if at < 0:
        return
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(digest.encode())

"""Target: one .safetensors file, streamed by hand (torch only for views of tensors; casts use
numpy and ml_dtypes).

The format (as the library writes it): 8-byte little-endian header length N; N bytes of UTF-8
JSON `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}`
padded with spaces to a multiple of 8; then every tensor's raw little-endian bytes, back to back.
Tensors are laid out largest item size first (like the library) so each stays aligned.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.convert.atomic import Staging
from core.convert.job import Job
from core.convert.stream import Meter, SourceReader, write_all
from core.convert.transforms import Item
from core.convert.verify import Written, verify_metadata, verify_safetensors
from core.dtypes import TO_SAFETENSORS, itemsize
from core.errors import CheckpointError
from core.formats.safetensors import MAX_HEADER

STREAMS = True
NAME = "safetensors"
SUFFIX = ".safetensors"


def default_name(stem: str) -> str:
    return stem + SUFFIX


def write(job: Job, destination: Path) -> list[Path]:
    items = ordered(job.plan.items)
    with Staging([destination], overwrite=job.overwrite, protect=job.protect) as stage:
        tmp = stage.temp(destination)
        with SourceReader(set(job.hasher.ranges)) as reader:
            written, patch_at = write_file(tmp, items, job.metadata(), reader, job.meter)
        sync_and_verify(stage, tmp, written, job)
        finish(stage, tmp, patch_at, job)
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


def write_file(path: Path, items: list[Item], metadata: dict[str, str], reader: SourceReader,
               meter: Meter) -> tuple[list[Written], int]:
    """Stream `items` into `path`; returns what was written and where the placeholder sits."""
    head = header_bytes(items, metadata)
    written = []
    with open(path, "r+b", buffering=0) as f:  # the empty temp file; no O_TRUNC: on ext4 a
        # truncate-then-close starts writeback at close, which the fsync below does anyway
        write_all(f, len(head).to_bytes(8, "little") + head)
        pos = 8 + len(head)
        for item in items:
            crc = reader.write(item, f, pos, meter)
            written.append(Written(item.name, item.dtype, item.source.shape, item.nbytes, crc))
            pos += item.nbytes
        if f.seek(0, os.SEEK_END) != pos:  # pragma: no cover - a reader bug, caught before saving
            raise CheckpointError("The written file came out with the wrong size.",
                                  f"{f.tell()} bytes instead of {pos}")
    return written, _placeholder_at(head, metadata)


def sync_and_verify(stage: Staging, tmp: Path, written: list[Written], job: Job) -> None:
    """fsync in a thread while the file is read back from the page cache and checked.

    The header still holds the placeholder for the source sha256 (see `finish`).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="fsync") as pool:
        synced = pool.submit(stage.sync, tmp)
        try:
            verify_safetensors(tmp, written, job.metadata(), job.meter, job.hasher.crcs)
        finally:
            synced.result()


def finish(stage: Staging, tmp: Path, patch_at: int, job: Job) -> None:
    """Put the source sha256 (hashed meanwhile) over its placeholder; sync and re-check the header.

    The data was synced and verified before, while the source hash was still being computed;
    the patch rewrites 64 header bytes, so this second fsync and check are quick.
    """
    digest = job.hasher.digest()
    patch(tmp, patch_at, digest)
    stage.sync(tmp)
    verify_metadata(tmp, job.metadata(digest))


def _placeholder_at(head: bytes, metadata: dict[str, str]) -> int:
    record = metadata.get("checkpoint_studio", "")
    token = json.loads(record).get("source_sha256", "") if record else ""
    return 8 + head.index(token.encode()) if token else -1


def patch(path: Path, at: int, digest: str) -> None:
    """Write the source sha256 over its placeholder (same length, so the header keeps its size)."""
    if at < 0:
        return
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(digest.encode())

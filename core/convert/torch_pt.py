"""Target: a torch `.pt` state_dict (zip), loadable with `torch.load(weights_only=True)`.

`torch.save` writes in place (a killed save leaves a broken file), so it only ever writes to a
temp file beside the destination; the file is verified and then moved into place. Tensors that
need no cast are views of a private (copy-on-write) memory map of the source, so their bytes are
paged in while `torch.save` writes them instead of being read into memory first; cast tensors
and views are built one by one and held until the save (torch.save takes the whole dict).
Tied tensors stay tied: both names refer to one tensor, which torch stores once.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any, BinaryIO

from core.convert.atomic import Staging
from core.convert.checksums import checksum
from core.convert.job import Job
from core.convert.precision import PrecisionCounter
from core.convert.stream import byte_start, is_raw_contiguous, tensor_bytes, torch_dtype
from core.convert.transforms import Item
from core.convert.verify import Written, verify_torch
from core.errors import Cancelled, CheckpointError
from core.progress import Progress

STREAMS = False
NAME = "pt"
SUFFIX = ".pt"


def default_name(stem: str) -> str:
    return stem + SUFFIX


def write(job: Job, destination: Path) -> list[Path]:
    with Staging([destination], overwrite=job.overwrite, protect=job.protect,
                 make_parents=job.create_folders) as stage:
        tmp = stage.temp(destination)
        maps: dict[Path, mmap.mmap] = {}
        state, written = build_state(job, maps)
        save(state, tmp, job.progress)
        del state
        maps.clear()
        stage.sync(tmp)
        verify_torch(tmp, written, job.plan.aliases, job.meter)
    return [destination]


def save(state: dict[str, Any], path: Path, progress: Progress | None = None) -> None:
    """torch.save into our own file object, so a failed write surfaces as its OSError, and a
    cancel is noticed between two writes (torch.save itself reports no progress)."""
    import torch

    try:
        with open(path, "r+b") as f:  # the empty temp file (no truncate, see safetensors_single)
            torch.save(state, f if progress is None else _CancellableFile(f, progress))
    except RuntimeError as exc:  # torch's writer fails again while closing after an OSError
        cause = exc.__context__
        while cause is not None and not isinstance(cause, (OSError, Cancelled)):
            cause = cause.__context__
        if cause is not None:
            raise cause from None
        raise CheckpointError("torch could not write the .pt file.", str(exc)) from None


class _CancellableFile:
    """What torch.save writes to: the file, checking for a cancel before every write."""

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self.f, self.progress = f, progress

    def write(self, data: Any) -> int:
        if self.progress.cancelled():
            raise Cancelled()
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def build_state(job: Job, maps: dict[Path, mmap.mmap]) -> tuple[dict[str, Any], list[Written]]:
    state: dict[str, Any] = {}
    written = []
    for item in job.plan.items:
        tensor = load(item, maps, job.precision)
        state[item.name] = tensor
        data = tensor_bytes(tensor)
        written.append(Written(item.name, item.dtype, item.source.shape, len(data), checksum(data)))
        job.meter.add(item.nbytes, f"writing {item.name}")
    for alias, target in job.plan.aliases.items():
        state[alias] = state[target]
    return state, written


def load(item: Item, maps: dict[Path, mmap.mmap], precision: PrecisionCounter | None = None) -> Any:
    """The tensor to save: a map of the source's bytes when possible, else a private copy."""
    import torch

    info = item.source
    # a quantized tensor needs its scale/zero point: read_tensor builds it (frombuffer with a
    # quantized dtype makes a tensor without a quantizer, which crashes torch when used)
    if info.quantization is None and is_raw_contiguous(info) and not item.cast and info.numel > 0:
        assert info.storage is not None
        mapped = maps.get(info.storage.path)
        if mapped is None:
            with open(info.storage.path, "rb") as f:
                mapped = maps[info.storage.path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        flat = torch.frombuffer(mapped, dtype=torch_dtype(info.dtype), count=info.numel,
                                offset=byte_start(info))
        return flat.view(info.shape)
    from core.tensor_io import read_tensor

    source = read_tensor(info)
    tensor = source.to(torch_dtype(item.dtype)).contiguous()
    if precision is not None and precision.covers(item):
        precision.add_tensors(item, source.contiguous(), tensor)
    del source
    # a slice: save only its own bytes (not quantized ones: torch cannot copy quint4x2, and
    # their storage may be smaller than nbytes; torch.save then writes the whole storage)
    if info.quantization is None and tensor.untyped_storage().nbytes() != tensor.nbytes:
        tensor = tensor.clone()
    return tensor

"""Target: a folder of safetensors shards + index, named the way Hugging Face names them.

    DEST/model-00001-of-00003.safetensors ... DEST/model.safetensors.index.json
    index = {"metadata": {"total_size": <data bytes>, ...our string metadata...},
             "weight_map": {tensor name: shard file name}}

Tensors fill shards in write order up to `max_shard_size` bytes of data; a tensor larger than
that gets a shard of its own. Tied tensors are written once and listed only under the name they
were written as; the aliases are in each shard's `__metadata__` and in the index metadata.
Every shard is verified before any of them is moved into place; the index is moved last.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.convert import safetensors_single as single
from core.convert.atomic import Staging
from core.convert.job import Job
from core.convert.stream import SourceReader
from core.convert.transforms import Item
from core.convert.verify import mismatch
from core.errors import CheckpointError
from core.report import human_bytes

STREAMS = True
NAME = "safetensors-sharded"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD = 5 * 10**9  # transformers' save_pretrained default ("5GB")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def default_name(stem: str) -> str:
    return stem  # a folder


def parse_size(text: str) -> int:
    """'2GB' -> 2_000_000_000, '500MiB' -> 524_288_000, '1000B' -> 1000 (units as transformers
    reads them). A number without a unit is refused: '2' would mean 2 bytes, never what is meant."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if match and not unit:
        raise CheckpointError(f"'{text}' has no unit; write the size like 2GB, 500MB or 1GiB "
                              f"({match.group(1)}B for bytes).")
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise CheckpointError(f"'{text}' is not a size; write it like 2GB, 500MB or 1GiB.")
    return int(float(match.group(1)) * _UNITS[unit])


def split(items: list[Item], max_size: int) -> list[list[Item]]:
    shards: list[list[Item]] = [[]]
    size = 0
    for item in items:
        if shards[-1] and size + item.nbytes > max_size:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.nbytes
    return shards


def write(job: Job, destination: Path) -> list[Path]:
    max_size = job.max_shard_size or DEFAULT_MAX_SHARD
    shards = split(single.ordered(job.plan.items), max_size)
    n = len(shards)
    names = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    finals = [destination / name for name in names] + [destination / INDEX_NAME]
    _note_oversized(job, max_size)
    with Staging(finals, overwrite=job.overwrite, protect=job.protect, create_dir=destination,
                 make_parents=job.create_folders) as stage:
        with SourceReader(set(job.hasher.ranges), precision=job.precision,
                          shared=job.hasher.shared) as reader:
            staged = [single.write_file(stage.temp(final), shard, job.metadata(), reader,
                                        job.meter)
                      for final, shard in zip(finals, shards, strict=False)]
        single.verify_and_finish(stage, staged, job)
        metadata = job.metadata(job.hasher.digest())
        weight_map = {item.name: name for name, shard in zip(names, shards, strict=True)
                      for item in shard}
        _write_index(stage, finals[-1], job.plan.nbytes, metadata, weight_map)
    return finals


def _write_index(stage: Staging, final: Path, total: int, metadata: dict[str, str],
                 weight_map: dict[str, str]) -> None:
    index = {"metadata": {"total_size": total, **metadata}, "weight_map": weight_map}
    tmp = stage.temp(final)
    tmp.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    stage.sync(tmp)
    if json.loads(tmp.read_text(encoding="utf-8")) != index:  # pragma: no cover
        raise mismatch(tmp, "the index file does not read back as written")


def _note_oversized(job: Job, max_size: int) -> None:
    big = [i.name for i in job.plan.items if i.nbytes > max_size]
    if big:
        job.notes.append(f"{len(big)} tensor(s) are larger than the maximum shard size "
                         f"({human_bytes(max_size)}) and were each written alone in a shard: "
                         + ", ".join(big[:5]))

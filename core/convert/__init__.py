"""Streaming, atomic, verified checkpoint conversion.

    result = convert("model.ckpt", "model.safetensors", "safetensors",
                     ConvertOptions(dtype="bf16", strip_prefix=("model.",)), progress=recorder)

A target is one module with `NAME`, `STREAMS` (it copies verbatim tensors through
`stream.SourceReader`), `default_name(stem)` and `write(job, destination) -> outputs`, registered
in `TARGETS`. Every target writes temp files beside the destination, verifies them with
the real library and only then moves them into place (see `atomic.py`, `verify.py`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from core.convert import safetensors_sharded, safetensors_single, torch_pt
from core.convert.checksums import METHOD
from core.convert.hashing import HASHES, SourceHasher, file_hash
from core.convert.job import Job
from core.convert.precision import FORMATS, OverflowFound, OverflowRefused, PrecisionCounter, precision_report
from core.convert.stream import cast_ranges, verbatim_ranges
from core.convert.transforms import ConvertOptions, Plan, build_plan
from core.errors import Cancelled, CheckpointError
from core.model import Checkpoint
from core.progress import Progress

__all__ = ["TARGETS", "BatchResult", "ConvertOptions", "ConvertResult", "OverflowRefused", "convert",
           "convert_many", "default_destination", "precision_report"]

TARGETS: dict[str, ModuleType] = {
    m.NAME: m for m in (safetensors_single, safetensors_sharded, torch_pt)
}


@dataclass
class ConvertResult:
    source: str
    source_format: str
    source_hash: dict[str, str]  # {"algorithm": "blake3" | "sha256", "digest": 64 hex digits}
    target: str
    outputs: list[dict[str, Any]]  # {"path", "size"}
    tensors_written: int  # distinct tensors (tied ones once)
    bytes_written: int  # tensor data bytes
    dtype_changes: dict[str, list[str]]  # name -> [from, to]
    dropped: list[str]
    dropped_sections: dict[str, int]
    renamed: dict[str, str]
    aliases: dict[str, str]  # alias -> written name
    verification: dict[str, Any]
    seconds: float
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    precision: dict[str, Any] | None = None  # PrecisionReport.to_dict() of a 16-bit float cast

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BatchResult:
    results: list[ConvertResult]
    errors: list[dict[str, str | None]]  # {"source", "message", "details"}

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "errors": self.errors}


def convert(source: str | os.PathLike[str] | Checkpoint, destination: str | os.PathLike[str],
            target: str = "safetensors", options: ConvertOptions | None = None, *,
            overwrite: bool = False, max_shard_size: int | None = None,
            create_folders: bool = False, allow_overflow: bool = False,
            source_hash: str = HASHES[0], progress: Progress | None = None) -> ConvertResult:
    """Convert one file; `destination` is a file (a folder for sharded output).

    A cast to float16/bfloat16 counts what it does to the values (`ConvertResult.precision`);
    one that would turn a finite value into infinity is refused (`OverflowRefused`, naming the
    tensors, nothing written) unless `allow_overflow`.

    `max_shard_size` is used by the sharded target only (the command line refuses it with
    another); `create_folders` makes the destination's missing folders (an output folder the
    user named), and removes them again when the conversion fails. `source_hash` names the hash
    that identifies the source in the output (`HASHES`: BLAKE3, or the sha256 the Hugging Face
    Hub shows, ~0.6 s more CPU per GB).
    """
    start = time.perf_counter_ns()
    module = _target(target)
    file_hash(source_hash)  # an unknown name is refused before anything starts
    checkpoint, hasher = _open_and_hash(source, progress, source_hash)
    try:
        options = options or ConvertOptions()
        plan = build_plan(checkpoint, options)
        if module.STREAMS:
            hasher.watch(verbatim_ranges(checkpoint.path, plan.items),
                         cast_ranges(checkpoint.path, plan.items))
        else:
            hasher.watch({})
    except BaseException:
        hasher.stop()
        raise
    job = Job(checkpoint, plan, options, hasher, overwrite=overwrite,
              max_shard_size=max_shard_size, create_folders=create_folders, progress=progress,
              precision=_counter(plan, allow_overflow), notes=list(plan.notes))
    try:
        outputs = module.write(job, Path(destination))
        digest = hasher.digest()
    except OverflowFound:  # the temp files are gone; count every tensor's overflow to name them
        hasher.stop()
        raise OverflowRefused(precision_report(checkpoint, options.dtype or "", options,
                                               progress=progress)) from None
    finally:
        hasher.stop()
    return _result(job, module.NAME, outputs, digest, start)


def _counter(plan: Plan, allow_overflow: bool) -> PrecisionCounter | None:
    dtypes = {i.dtype for i in plan.items if i.cast} & set(FORMATS)
    return PrecisionCounter(dtypes.pop(), allow_overflow=allow_overflow) if dtypes else None


def convert_many(sources: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None,
                 target: str = "safetensors", options: ConvertOptions | None = None, *,
                 overwrite: bool = False, max_shard_size: int | None = None,
                 allow_overflow: bool = False, source_hash: str = HASHES[0],
                 progress: Progress | None = None) -> BatchResult:
    """Convert several files (drag-and-drop) into `out_dir`, or beside each one when it is None.

    One result per file; a file that fails is listed in `errors` and the others still convert.
    A missing `out_dir` is created (and removed again if no file could be converted into it).
    """
    destinations = [default_destination(s, target, out_dir) for s in sources]
    batch = BatchResult([], [])
    for src, dest in zip(sources, destinations, strict=True):
        try:
            if destinations.count(dest) > 1:
                raise CheckpointError(f"Several inputs would be written to '{dest.name}'; "
                                      "convert them into separate folders.")
            batch.results.append(convert(src, dest, target, options, overwrite=overwrite,
                                         max_shard_size=max_shard_size, allow_overflow=allow_overflow,
                                         create_folders=out_dir is not None, source_hash=source_hash,
                                         progress=progress))
        except Cancelled:
            raise
        except CheckpointError as exc:
            batch.errors.append({"source": str(src), "message": exc.message, "details": exc.details})
    return batch


def default_destination(source: str | os.PathLike[str], target: str,
                        out_dir: str | os.PathLike[str] | None = None) -> Path:
    """`DIR/<source stem><target suffix>`: model.ckpt -> model.safetensors; an index -> its stem."""
    source = Path(source)
    name = source.name
    for ending in (".safetensors.index.json", ".index.json"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    else:
        name = source.stem
    folder = Path(out_dir) if out_dir is not None else source.parent
    return folder / _target(target).default_name(name)


def _target(name: str) -> ModuleType:
    module = TARGETS.get(name)
    if module is None:
        raise CheckpointError(f"Unknown conversion target '{name}'; choose one of: "
                              f"{', '.join(TARGETS)}.")
    return module


def _open_and_hash(source: str | os.PathLike[str] | Checkpoint, progress: Progress | None,
                   algorithm: str) -> tuple[Checkpoint, SourceHasher]:
    """The opened checkpoint and its source hash, started as early as possible: a file's hash
    can take as long as the copy, so it starts before the file is even parsed."""
    from core.formats import open_checkpoint

    if isinstance(source, Checkpoint):
        return source, SourceHasher(source.path, progress=progress, algorithm=algorithm)
    early = SourceHasher(Path(source), progress=progress, algorithm=algorithm) \
        if os.path.isfile(source) else None
    try:
        checkpoint = open_checkpoint(source)
    except BaseException:
        if early is not None:
            early.stop()
        raise
    if early is not None and os.path.abspath(checkpoint.path) == os.path.abspath(source):
        return checkpoint, early
    if early is not None:  # the file named another (an index, a folder's weights)
        early.stop()
    return checkpoint, SourceHasher(checkpoint.path, progress=progress, algorithm=algorithm)


def _output_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:  # another conversion to the same place replaced it in the meantime
        raise CheckpointError(f"'{path.name}' was replaced by another program right after it was "
                              "written; convert again if you need this output.", str(exc)) from None


def _result(job: Job, target: str, outputs: list[Path], digest: str, start: int) -> ConvertResult:
    plan: Plan = job.plan
    files = [{"path": str(p), "size": _output_size(p)} for p in outputs]
    verification = {"method": METHOD, "tensors": len(plan.items), "passed": True}
    metadata = job.metadata(digest) if target != torch_pt.NAME else {}
    precision = job.precision.report(plan.items) if job.precision is not None else None
    if precision is not None and precision.overflow:
        job.notes.append(f"{precision.overflow:,} value(s) larger than {precision.max_finite:.6g} "
                         f"became infinity in the cast to {precision.dtype}: "
                         + ", ".join(precision.overflowing[:5]))
    if job.checkpoint.findings:
        job.notes.append(f"The source references code ({len(job.checkpoint.findings)} finding(s), "
                         "see `ckpt-studio scan`); none of it was run and only tensors were copied.")
    return ConvertResult(
        source=str(job.checkpoint.path), source_format=job.checkpoint.format,
        source_hash={"algorithm": job.hasher.algorithm, "digest": digest}, target=target,
        outputs=files, tensors_written=len(plan.items),
        bytes_written=plan.nbytes, dtype_changes=plan.dtype_changes, dropped=plan.dropped,
        dropped_sections=plan.dropped_sections, renamed=plan.renamed, aliases=plan.aliases,
        verification=verification, seconds=(time.perf_counter_ns() - start) / 1e9,
        metadata=metadata, notes=job.notes,
        precision=precision.to_dict() if precision is not None else None)

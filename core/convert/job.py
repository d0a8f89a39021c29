"""What every target's `write(job, destination)` gets: the plan plus the shared machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.convert.hashing import SourceHasher
from core.convert.metadata import build_metadata
from core.convert.precision import PrecisionCounter
from core.convert.stream import Meter
from core.convert.transforms import ConvertOptions, Plan
from core.model import Checkpoint
from core.progress import Progress


@dataclass
class Job:
    checkpoint: Checkpoint
    plan: Plan
    options: ConvertOptions
    hasher: SourceHasher
    overwrite: bool = False
    max_shard_size: int | None = None
    create_folders: bool = False  # make a missing output folder (and the ones above it)
    progress: Progress | None = None
    precision: PrecisionCounter | None = None  # counts what the cast overflows or flushes
    notes: list[str] = field(default_factory=list)
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.meter = Meter(self.progress, 2 * self.plan.nbytes)  # writing, then verifying

    @property
    def protect(self) -> list[Path]:
        """Every file the source reads from: never written, even with overwrite."""
        paths = {self.checkpoint.path}
        paths |= {t.storage.path for t in self.checkpoint.all_tensors() if t.storage is not None}
        return sorted(paths)

    def metadata(self, digest: str | None = None) -> dict[str, str]:
        """The output metadata; without the source's `digest`, with the placeholder a writer
        patches later."""
        return build_metadata(self.checkpoint, self.plan, self.options,
                              digest or self.hasher.placeholder, self.hasher.algorithm)

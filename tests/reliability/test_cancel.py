"""Cancel: every long core job stops within 1 s of `cancelled()` turning true, and leaves nothing.

The progress object is a slow fake (each update takes LAG seconds, as a busy GUI might) whose
`cancelled()` turns true at a chosen moment: a time into the job, or just after the last progress
update (when a job that only checks in `update` would run on unchecked). Slow phases without
progress updates (hashing the source, torch.save on a slow disk) are simulated by slowing the
library calls down, so a cancel lands inside them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.checks import check_parity, measure_latency
from core.convert import convert, hashing, torch_pt
from core.diff.structure import diff_files
from core.errors import Cancelled
from core.formats import open_checkpoint
from core.runtime import Runner
from core.stats import tensor_stats

LIMIT = 1.0  # seconds from cancelled() turning true to the job giving up
LAG = 0.02  # seconds each progress update takes
TARGETS = ["safetensors", "safetensors-sharded", "pt"]


class SlowCancel:
    """A slow Progress that turns cancelled `at` seconds after it is made, or `delay` seconds
    after its `after_update`-th update, or `delay` seconds after an update reports done == total
    (the last one), whichever is given."""

    def __init__(self, at: float | None = None, after_update: int | None = None,
                 after_last: bool = False, delay: float = 0.05) -> None:
        self.start = time.perf_counter()
        self.at, self.after_update, self.after_last, self.delay = at, after_update, after_last, delay
        self.trigger: float | None = None
        self.updates = 0

    def update(self, done: int, total: int, text: str = "") -> None:
        self.updates += 1
        if self.trigger is None and (self.updates == self.after_update
                                     or (self.after_last and done >= total)):
            self.trigger = time.perf_counter()
        time.sleep(LAG)

    def flip_time(self) -> float | None:
        if self.at is not None:
            return self.start + self.at
        return None if self.trigger is None else self.trigger + self.delay

    def cancelled(self) -> bool:
        flip = self.flip_time()
        return flip is not None and time.perf_counter() >= flip


def stops_in_time(job: Callable[[], Any], progress: SlowCancel) -> bool:
    """Run `job`; True when it was cancelled. Either way it must end within LIMIT of the flip."""
    try:
        job()
        cancelled = False
    except Cancelled:
        cancelled = True
    end = time.perf_counter()
    flip = progress.flip_time()
    if flip is not None and end > flip:
        assert end - flip <= LIMIT, f"ran on for {end - flip:.2f} s after the cancel"
    return cancelled


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 32 MB checkpoints with the same names and shapes."""
    root = tmp_path_factory.mktemp("cancel")
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        gen = torch.Generator().manual_seed(seed)
        out[name] = root / f"{name}.pt"
        torch.save({f"w{i}": torch.randn(2048, 1024, generator=gen) for i in range(4)}, out[name])
    return out


def no_thread_left() -> bool:
    return not any(t.name == "source-hash" and t.is_alive() for t in threading.enumerate())


def converted(src: Path, folder: Path, target: str, progress: SlowCancel) -> Callable[[], Any]:
    dest = folder / ("out" if target == "safetensors-sharded" else f"out.{target}")
    return lambda: convert(src, dest, target, max_shard_size=16 << 20, progress=progress)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("update", [1, 5])
def test_convert_stops_at_any_update(big: dict[str, Path], tmp_path: Path, target: str,
                                     update: int) -> None:
    """Cancelled at the first update (writing) or the fifth (verifying)."""
    progress = SlowCancel(after_update=update, delay=0.0)
    assert stops_in_time(converted(big["a"], tmp_path, target, progress), progress)
    assert list(tmp_path.iterdir()) == []
    assert no_thread_left()


@pytest.fixture()
def slow_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The source hash crawls (a huge source on a slow disk): 0.25 s per 8 MiB."""
    real = hashing.file_hash

    class Slow:
        def __init__(self, algorithm: str) -> None:
            self.inner = real(algorithm)

        def update(self, data: Any) -> None:
            time.sleep(0.25)
            self.inner.update(data)

        def hexdigest(self) -> str:
            return self.inner.hexdigest()

    monkeypatch.setattr(hashing, "file_hash", Slow)


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded"])
def test_convert_stops_while_waiting_for_the_source_hash(big: dict[str, Path], tmp_path: Path,
                                                         slow_hash: None, target: str) -> None:
    """Cancelled while the writer waits for the source's checksums: after the last update
    (one file), or after the first shard was read back (shards check as they go)."""
    progress = (SlowCancel(after_last=True) if target == "safetensors"
                else SlowCancel(after_update=5))
    assert stops_in_time(converted(big["a"], tmp_path, target, progress), progress)
    assert list(tmp_path.iterdir()) == []
    assert no_thread_left()


@pytest.fixture()
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The .pt file is written at 20 MB/s (torch.save itself reports no progress)."""
    real_open = open

    class SlowFile:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.f = real_open(*args, **kwargs)

        def write(self, data: Any) -> int:
            time.sleep(len(memoryview(data).cast("B")) / 20e6)
            return self.f.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> SlowFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    monkeypatch.setattr(torch_pt, "open", SlowFile, raising=False)


def test_convert_to_pt_stops_inside_torch_save(big: dict[str, Path], tmp_path: Path,
                                               slow_disk: None) -> None:
    """Cancelled once the four tensors were gathered, while torch.save writes them."""
    progress = SlowCancel(after_update=4, delay=0.1)
    assert stops_in_time(converted(big["a"], tmp_path, "pt", progress), progress)
    assert list(tmp_path.iterdir()) == []


def test_value_diff_stops(big: dict[str, Path]) -> None:
    progress = SlowCancel(at=0.2)
    assert stops_in_time(lambda: diff_files(big["a"], big["b"], values=True, progress=progress),
                         progress)


def test_stats_stop(big: dict[str, Path]) -> None:
    ckpt = open_checkpoint(big["a"])
    progress = SlowCancel(at=0.1)
    assert stops_in_time(lambda: tensor_stats(ckpt, "w0", progress=progress), progress)


class Sleepy(Runner):
    """A model that takes 50 ms per run."""

    backend = "fake"

    def __init__(self, name: str) -> None:
        super().__init__(name, ["x"], ["y"])

    def _run_impl(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        time.sleep(0.05)
        return {"y": np.asarray(feed["x"], np.float32)}


def test_latency_stops() -> None:
    progress = SlowCancel(at=0.3)
    job = lambda: measure_latency([Sleepy("a"), Sleepy("b")], "x: float32[batch(1..64), 4]",  # noqa: E731
                                  batches=(1, 16), warmup=2, runs=200, progress=progress)
    assert stops_in_time(job, progress)


def test_parity_stops() -> None:
    progress = SlowCancel(at=0.3)
    points = [{"batch": b} for b in range(1, 41)]
    job = lambda: check_parity(Sleepy("a"), Sleepy("b"), "x: float32[batch(1..64), 4]",  # noqa: E731
                               points=points, progress=progress)
    assert stops_in_time(job, progress)

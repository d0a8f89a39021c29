"""Crash-safe writes: SIGKILL at random points, a full disk (RLIMIT_FSIZE), two writers at once.

Each conversion runs in a child process (tests/reliability/child.py). Whatever happens to it, the
destination holds either nothing, the previous complete output or the new complete output, never
a mix or a torn file; temp files left by a killed process are hidden
`.<name>.<pid>-<host>-<random>.partial` files that nothing reads and that a later conversion into
the same folder removes (never those of a writer still running); the source is never touched.
"""

from __future__ import annotations

import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from core.convert import convert
from core.convert.safetensors_sharded import INDEX_NAME
from core.formats import open_checkpoint
from tests.reliability.conftest import (
    SHARD,
    TARGETS,
    Source,
    dest_of,
    digest,
    leftovers,
    run_child,
    spawn,
    state,
    visible,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and rlimits")
CHUNK = 1 << 20  # a progress update per MiB: ~32 kill points per conversion
Kill = tuple[str, float]  # ("update", n) | ("commit", n) | ("time", seconds after START)


def prepare(folder: Path, target: str, previous: Source | None) -> Path:
    """A fresh folder holding `previous`'s complete output at the destination (or nothing)."""
    folder.mkdir()
    dest = dest_of(folder, target)
    if previous is not None:
        ref = previous.refs[target]
        shutil.copytree(ref, dest) if ref.is_dir() else shutil.copy(ref, dest)
    return dest


def kill_at(opts: dict, when: Kill) -> bool:
    """Run a child conversion and SIGKILL it at `when`; False when it finished first."""
    proc = spawn(opts)
    kind, n = when
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(("DONE", "ERROR")):
            break
        if kind == "time" and line.startswith("START"):
            time.sleep(n)
            break
        seen += line.startswith("U " if kind == "update" else "COMMIT ")
        if kind != "time" and seen >= n:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode == -signal.SIGKILL


def check_destination(dest: Path, target: str, sources: dict[str, Source],
                      allowed: set[str]) -> None:
    got = state(dest, target, sources)
    assert got in allowed, f"{dest} holds {got}"
    folder = dest if target == "safetensors-sharded" else dest.parent
    if target != "safetensors-sharded":
        assert set(visible(folder)) <= {dest.name}
    prefix = ".model" if folder == dest else f".{dest.name}."
    assert all(name.startswith(prefix) for name in leftovers(folder)), leftovers(folder)


def kill_points(target: str) -> list[Kill]:
    rng = random.Random(f"kill-{target}")
    updates = [("update", rng.randint(1, 34)) for _ in range(3)]
    times = [("time", rng.uniform(0.0, 0.5)) for _ in range(2)]
    return updates + times if target != "pt" else updates[:2] + times[:1]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", TARGETS)
def test_sigkill_at_random_points(sources: dict[str, Source], tmp_path: Path,
                                  target: str) -> None:
    """Over a previous output of A, converting B is killed: A or B remain, whole."""
    a, b = sources["A"], sources["B"]
    before = digest(b.path)
    for i, when in enumerate(kill_points(target)):
        dest = prepare(tmp_path / f"run{i}", target, previous=a)
        opts = {"source": str(b.path), "dest": str(dest), "target": target, "overwrite": True,
                "max_shard_size": SHARD, "chunk": CHUNK, "update_sleep": 0.005}
        kill_at(opts, when)
        check_destination(dest, target, sources, {"A", "B"} if target != "safetensors-sharded"
                          else {"A", "B", "absent"})
    assert digest(b.path) == before


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded"])
def test_sigkill_between_the_moves_into_place(sources: dict[str, Source], tmp_path: Path,
                                              target: str) -> None:
    """Killed just before each os.replace of the commit: never a mix of A's and B's files
    (a sharded set loses its index first, so a half-moved set is never loadable)."""
    a, b = sources["A"], sources["B"]
    moves = 1 if target == "safetensors" else len(list(b.refs[target].iterdir()))
    for n in range(1, moves + 1):
        dest = prepare(tmp_path / f"commit{n}", target, previous=a)
        opts = {"source": str(b.path), "dest": str(dest), "target": target, "overwrite": True,
                "max_shard_size": SHARD, "slow_commit": 0.2}
        assert kill_at(opts, ("commit", n))
        allowed = {"A"} if target == "safetensors" else {"A", "absent"}
        check_destination(dest, target, sources, allowed)


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded"])
def test_leftover_temp_files_are_hidden_then_removed(sources: dict[str, Source], tmp_path: Path,
                                                     target: str) -> None:
    """A conversion killed mid-write leaves hidden .partial files; the destination is absent,
    converting again is not disturbed by them, and removes them (their writer is gone)."""
    dest = prepare(tmp_path / "run", target, previous=None)
    opts = {"source": str(sources["B"].path), "dest": str(dest), "target": target,
            "max_shard_size": SHARD, "chunk": CHUNK, "update_sleep": 0.01}
    assert kill_at(opts, ("update", 20))
    folder = dest if target == "safetensors-sharded" else dest.parent
    left = leftovers(folder)
    assert left, "the kill should have left a temp file behind"
    assert state(dest, target, sources) == "absent"
    convert(sources["B"].path, dest, target, overwrite=True, max_shard_size=SHARD)
    assert state(dest, target, sources) == "B"
    assert open_checkpoint(dest / INDEX_NAME if folder == dest else dest).all_tensors()
    assert leftovers(folder) == []  # never read, never taken for output, and now cleaned up


@pytest.mark.parametrize("target", ["safetensors", "pt"])
def test_a_running_writers_temp_file_is_never_removed(sources: dict[str, Source], tmp_path: Path,
                                                      target: str) -> None:
    """While one conversion is mid-write, another one to the same destination leaves the first
    one's temp file alone; both finish and the destination holds one complete output."""
    a, b = sources["A"], sources["B"]
    dest = prepare(tmp_path / "run", target, previous=None)
    proc = spawn({"source": str(b.path), "dest": str(dest), "target": target, "overwrite": True,
                  "chunk": CHUNK, "update_sleep": 0.05})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("U ") and leftovers(dest.parent):
            break
    theirs = leftovers(dest.parent)
    assert theirs, "the child should be mid-write"
    convert(a.path, dest, target, overwrite=True)
    assert set(theirs) <= set(leftovers(dest.parent))  # still there, still being written
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.splitlines()[-1] == "DONE", err[-2000:]
    assert state(dest, target, sources) == "B" and leftovers(dest.parent) == []


# ---- disk full ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
@pytest.mark.parametrize(("target", "limit"), [("safetensors", 4096), ("safetensors", 2 << 20),
                                               ("safetensors-sharded", 4096),
                                               ("safetensors-sharded", 2 << 20), ("pt", 2 << 20)])
def test_file_size_limit_is_a_plain_error(sources: dict[str, Source], tmp_path: Path, target: str,
                                          limit: int) -> None:
    """The kernel refuses writes past `limit` (EFBIG, as on a full disk): a plain error, the
    previous output intact, no temp file left, the source untouched."""
    a, b = sources["A"], sources["B"]
    before = digest(b.path)
    for previous in (None, a):
        dest = prepare(tmp_path / f"prev-{previous and previous.name}", target, previous)
        lines = run_child({"source": str(b.path), "dest": str(dest), "target": target,
                           "overwrite": True, "max_shard_size": SHARD, "fsize_limit": limit})
        assert lines[-1].startswith("ERROR The disk is full"), lines[-3:]
        check_destination(dest, target, sources, {previous.name if previous else "absent"})
        assert leftovers(dest.parent) == []
    assert digest(b.path) == before


# ---- two writers ----------------------------------------------------------------------------------
# per move into place: A is slow on its first moves, B on its last ones, so without a lock the
# two commits interleave and each writer lands some of the files last
DELAYS = {"A": [0.3, 0.3, 0.0], "B": [0.0, 0.0, 0.3]}


def race(sources: dict[str, Source], dest: Path, target: str, overwrite: bool) -> list[str]:
    """Convert A and B to `dest` at the same moment; the last line of each."""
    go = dest.parent / "go"
    procs = [spawn({"source": str(s.path), "dest": str(dest), "target": target,
                    "overwrite": overwrite, "max_shard_size": SHARD, "go_file": str(go),
                    "slow_commit": DELAYS[s.name]}) for s in (sources["A"], sources["B"])]
    time.sleep(1.0)  # both have imported and wait for the go file
    go.touch()
    ends = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        ends.append(out.splitlines()[-1])
    go.unlink()
    return ends


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_two_conversions_to_one_destination(sources: dict[str, Source], tmp_path: Path,
                                            target: str, overwrite: bool) -> None:
    """One wins whole. Without overwrite the other is refused ("already exists"); with it,
    both finish and the destination holds one complete output."""
    dest = prepare(tmp_path / "race", target, previous=None)
    ends = race(sources, dest, target, overwrite)
    winners = {name for name, end in zip("AB", ends, strict=True) if end == "DONE"}
    assert winners, ends
    if not overwrite:
        assert len(winners) == 1, ends
        assert any("already exists" in end for end in ends), ends
    check_destination(dest, target, sources, winners)
    assert leftovers(dest.parent) == []

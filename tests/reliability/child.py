"""A conversion run in a child process, so a test can SIGKILL it, limit its file sizes, or race two.

    python -m tests.reliability.child '{"source": ..., "dest": ..., "target": "safetensors", ...}'

Prints one line per event, flushed at once: "START", "U <done> <total>" per progress update,
"COMMIT <name>" before each file is moved into place (only with "slow_commit": seconds to wait
before each move, or a list of them), then "DONE" or "ERROR <message>". Other options:
"overwrite", "max_shard_size", "chunk" (bytes per progress step), "update_sleep" (seconds per
update: spreads the job out in time), "go_file" (wait for it to exist before converting, to start
two children at once), "fsize_limit" (RLIMIT_FSIZE in bytes).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


class Printer:
    """A Progress that reports each update on stdout; never cancels."""

    def __init__(self, sleep: float) -> None:
        self.sleep = sleep

    def update(self, done: int, total: int, text: str = "") -> None:
        print(f"U {done} {total}", flush=True)
        if self.sleep:
            time.sleep(self.sleep)

    def cancelled(self) -> bool:
        return False


def slow_commit(delay: float | list[float]) -> None:
    """Announce and delay every os.replace (in this process): a window for SIGKILL, or for
    another writer. `delay` is one delay for every move or a list, one per move."""
    real, delays = os.replace, [delay] if isinstance(delay, (int, float)) else list(delay)

    def replace(src: Any, dst: Any) -> None:
        print(f"COMMIT {Path(dst).name}", flush=True)
        time.sleep(delays.pop(0) if len(delays) > 1 else delays[0])
        real(src, dst)

    os.replace = replace


def limit_file_size(limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def run(opts: dict[str, Any]) -> None:
    from core.convert import convert, stream
    from core.errors import CheckpointError

    if opts.get("chunk"):
        stream.CHUNK = opts["chunk"]
    if opts.get("slow_commit"):
        slow_commit(opts["slow_commit"])
    if opts.get("fsize_limit"):
        limit_file_size(opts["fsize_limit"])
    while opts.get("go_file") and not os.path.exists(opts["go_file"]):
        time.sleep(0.001)
    print("START", flush=True)
    try:
        convert(opts["source"], opts["dest"], opts.get("target", "safetensors"),
                overwrite=opts.get("overwrite", False), max_shard_size=opts.get("max_shard_size"),
                progress=Printer(opts.get("update_sleep", 0.0)))
    except CheckpointError as exc:
        print(f"ERROR {exc.message}", flush=True)
        return
    print("DONE", flush=True)


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))

"""Two ~16 MB checkpoints with the same tensor names and shapes (so a mix of their outputs would
look valid), their reference conversions, and the helpers that judge what a destination holds."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from core.convert import convert
from core.convert.safetensors_sharded import INDEX_NAME

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ["safetensors", "safetensors-sharded", "pt"]
SHARD = 6 << 20  # max shard size: one 4 MiB tensor per shard, four shards per output
PARTIAL = re.compile(r"^\..+\.partial$")  # how the atomic writer names its temp files


@dataclass
class Source:
    name: str  # "A" or "B"
    path: Path
    tensors: dict[str, torch.Tensor]
    refs: dict[str, Path]  # target -> its complete output, converted without interruption


def _source(root: Path, name: str, seed: int) -> Source:
    gen = torch.Generator().manual_seed(seed)
    tensors = {f"layer{i}.weight": torch.randn(1024, 1024, generator=gen) for i in range(4)}
    folder = root / name
    folder.mkdir()
    path = folder / "model.pt"
    torch.save(tensors, path)
    refs = {}
    (root / f"ref-{name}").mkdir()
    for target in TARGETS:
        refs[target] = dest_of(root / f"ref-{name}", target)
        convert(path, refs[target], target, max_shard_size=SHARD)
    return Source(name, path, tensors, refs)


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    root = tmp_path_factory.mktemp("reliability")
    return {"A": _source(root, "A", 1), "B": _source(root, "B", 2)}


def dest_of(folder: Path, target: str) -> Path:
    return folder / {"safetensors": "out.safetensors", "pt": "out.pt",
                     "safetensors-sharded": "out"}[target]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible(folder: Path) -> dict[str, Path]:
    """Files a user (or a loader) sees in a folder: everything but our temp files."""
    return {p.name: p for p in folder.iterdir() if not PARTIAL.match(p.name)}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if PARTIAL.match(p.name))


def state(dest: Path, target: str, sources: dict[str, Source]) -> str:
    """'absent', the name of the source whose complete output `dest` holds, or 'PARTIAL'."""
    if target == "safetensors-sharded":
        return _sharded_state(dest, sources)
    if not dest.exists():
        return "absent"
    for src in sources.values():
        if target == "safetensors" and digest(dest) == digest(src.refs[target]):
            return src.name
        if target == "pt" and _same_tensors(dest, src.tensors):
            return src.name
    return "PARTIAL"


def _same_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> bool:
    try:
        loaded = torch.load(path, weights_only=True)
    except Exception:  # unreadable: not a complete file
        return False
    return loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], v)
                                                   for k, v in tensors.items())


def _sharded_state(dest: Path, sources: dict[str, Source]) -> str:
    """Without its index a folder holds no loadable model ('absent'); with it, every file it
    names must be one source's complete output. Every shard present must be a whole file."""
    files = visible(dest) if dest.is_dir() else {}
    complete = {digest(p) for s in sources.values() for p in s.refs["safetensors-sharded"].iterdir()}
    if any(digest(p) not in complete for p in files.values()):
        return "PARTIAL"
    if INDEX_NAME not in files:
        return "absent"
    for src in sources.values():
        ref = src.refs["safetensors-sharded"]
        names = json.loads((ref / INDEX_NAME).read_text())["weight_map"].values()
        wanted = {*names, INDEX_NAME}
        if all(n in files and digest(files[n]) == digest(ref / n) for n in wanted):
            return src.name
    return "PARTIAL"


def spawn(opts: dict) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.child", json.dumps(opts)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_child(opts: dict, timeout: float = 120) -> list[str]:
    proc = spawn(opts)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out.splitlines()

"""Property-based fuzzing: mutated bytes of every fixture format fed to open_checkpoint.

Only a CheckpointError may come out of opening, inspecting or reading a tensor of a mutated file,
each example ends within a deadline, and the whole run has a time budget (FUZZ_SECONDS in total,
shared by the formats), so CI time stays bounded. Edits favour the bytes a reader interprets
(pickles, headers, zip directories), where the bugs live, over raw tensor data.

Examples are derandomized so CI is repeatable; set CKPT_FUZZ_RANDOM=1 to explore new ones, and
CKPT_FUZZ_SECONDS to fuzz longer.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import random
import shutil
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.inspect import inspect_checkpoint
from core.report import to_json
from core.tensor_io import read_tensor
from tests.fixtures.models import FixtureFiles
from tests.security.framings import MAGIC_FRAMINGS
from tests.security.payloads import legacy_pickles

FUZZ_SECONDS = float(os.environ.get("CKPT_FUZZ_SECONDS", "56"))
TARGETS = ["state_dict", "training", "legacy", "safetensors", "sharded_index", "torchscript",
           "pt2", "onnx", "legacy_padded_magic", "legacy_octal_magic", "legacy_long1_magic",
           "zip_code_folder", "plain_pickle_framed",  # unusual framings torch.load still reads
           "safetensors_polyglot", "safetensors_inner_pickles"]  # pickles inside safetensors
BUDGET = FUZZ_SECONDS / len(TARGETS)
ROUND = 25  # examples per hypothesis run; the budget is checked between runs
READ_LIMIT = 1 << 20  # tensors larger than this (after a mutation) are not read back
Span = tuple[int, int]


def hot_spans(path: Path, data: bytes) -> list[Span]:
    """The byte ranges a reader interprets for this format (the rest is tensor data)."""
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(path) as zf:
            spans = [(i.header_offset, i.header_offset + 30 + len(i.filename) + i.compress_size)
                     for i in zf.infolist() if "/data/" not in i.filename
                     and "/weights/weight_" not in i.filename]
            return [*spans, (zf.start_dir, len(data))]
    if path.suffix == ".safetensors":
        return [(0, 8 + int.from_bytes(data[:8], "little"))]
    if path.suffix == ".pt":  # legacy: the five pickles before the storages
        return [(0, legacy_pickles(data)[-1][1])]
    return [(0, len(data))]


class Target:
    """One fixture's pristine bytes, where to write a mutant, and the clock of its budget."""

    def __init__(self, src: Path, key: str, folder: Path) -> None:
        if key == "sharded_index":
            shutil.copytree(src.parent, folder)
            self.path = folder / src.name
        else:
            folder.mkdir()
            self.path = folder / src.name
        self.data = src.read_bytes()
        self.spans = hot_spans(src, self.data)
        self.started: float | None = None
        self.examples = self.opened = 0

    def out_of_time(self) -> bool:
        now = time.monotonic()
        self.started = self.started or now
        return now - self.started > BUDGET


@st.composite
def mutations(draw: st.DrawFn, size: int, spans: list[Span]) -> list[tuple[int, int, bytes]]:
    """1-4 edits (offset, bytes removed, bytes inserted), mostly overwrites in a hot span."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        start, end = draw(st.sampled_from(spans)) if draw(st.integers(0, 4)) else (0, size)
        at = draw(st.integers(start, max(start, min(end, size) - 1)))
        kind = draw(st.sampled_from(["overwrite"] * 6 + ["insert", "delete"]))
        n = draw(st.integers(1, 4 if kind == "overwrite" else 8))
        if kind == "delete":
            edits.append((at, n, b""))
            continue
        data = draw(st.binary(min_size=n, max_size=n)
                    | st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80"]).map(lambda b, n=n: b * n))
        edits.append((at, n if kind == "overwrite" else 0, data))
    return edits


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for at, removed, inserted in edits:
        buf[at:at + removed] = inserted
    return bytes(buf)


def exercise(path: Path) -> bool:
    """Open, inspect, render and read small tensors; True when the file opened."""
    try:
        ckpt = open_checkpoint(path)
        to_json(inspect_checkpoint(ckpt))
    except CheckpointError:
        return False
    for info in ckpt.all_tensors()[:64]:
        if info.nbytes <= READ_LIMIT and (info.storage is None or info.storage.nbytes <= READ_LIMIT):
            with contextlib.suppress(CheckpointError):
                read_tensor(info)
    return True


@pytest.fixture(scope="module")
def targets(files: FixtureFiles, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    root = tmp_path_factory.mktemp("fuzz")
    sources = {**files.paths, **framing_sources(files, root / "sources")}
    return {key: Target(sources[key], key, root / key) for key in TARGETS}


def framing_sources(files: FixtureFiles, folder: Path) -> dict[str, Path]:
    """Fixtures in the framings torch.load accepts (no payload: they open cleanly)."""
    folder.mkdir()
    legacy = files["legacy"].read_bytes()
    magic_end = legacy_pickles(legacy)[0][1]
    out = {}
    for name in ("padded", "octal", "long1"):
        out[f"legacy_{name}_magic"] = folder / f"{name}.pt"
        out[f"legacy_{name}_magic"].write_bytes(MAGIC_FRAMINGS[name.replace("octal", "octal_int")]
                                                + legacy[magic_end:])
    out["zip_code_folder"] = folder / "code_folder.pt"
    with zipfile.ZipFile(files["state_dict"]) as src, \
            zipfile.ZipFile(out["zip_code_folder"], "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{src.infolist()[0].filename.split('/')[0]}/code/model.py", b"x = 1\n")
    body = pickle.dumps({"epoch": 3, "lr": [0.1, 0.01], "name": "run"}, protocol=4)
    out["plain_pickle_framed"] = folder / "framed.pkl"
    out["plain_pickle_framed"].write_bytes(body)
    out.update(_safetensors_with_pickles(folder))
    return out


def _safetensors_with_pickles(folder: Path) -> dict[str, Path]:
    """Harmless pickles inside safetensors files: a polyglot (the whole file is also a pickle), a
    protocol 0 pickle in the metadata, a protocol 4 one in a byte tensor."""
    import torch
    from safetensors.torch import save_file

    from tests.security.test_parser_differentials import polyglot

    out = {"safetensors_polyglot": polyglot(folder / "polyglot.safetensors", folder / "unused",
                                            body=b"(K\x01K\x02t")}
    out["safetensors_inner_pickles"] = folder / "inner.safetensors"
    blob = bytearray(pickle.dumps({"epoch": 3, "lr": [0.1, 0.01]}, protocol=4))
    save_file({"w": torch.ones(3), "blob": torch.frombuffer(blob, dtype=torch.uint8)},
              str(out["safetensors_inner_pickles"]),
              metadata={"args": pickle.dumps({"epoch": 3}, protocol=0).decode()})
    return out


def fuzz_round(target: Target, seed_value: int) -> None:
    """ROUND examples from one seed (each round starts where its seed says, so runs repeat)."""
    @seed(seed_value)
    @settings(max_examples=ROUND, deadline=timedelta(seconds=5), database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutations(len(target.data), target.spans))
    def fuzz(edits: list[tuple[int, int, bytes]]) -> None:
        target.path.write_bytes(mutate(target.data, edits))
        target.examples += 1
        target.opened += exercise(target.path)

    fuzz()


@pytest.mark.slow
@pytest.mark.timeout(int(BUDGET) + 60)
@pytest.mark.parametrize("key", TARGETS)
def test_mutated_files_raise_only_checkpoint_errors(targets: dict[str, Target], key: str) -> None:
    target = targets[key]
    first = random.randrange(1 << 30) if "CKPT_FUZZ_RANDOM" in os.environ else 0
    for seed_value in itertools.count(first):
        if target.out_of_time():
            break
        fuzz_round(target, seed_value)
    assert target.examples > 10, "the budget allowed too few examples to mean anything"
    print(f"{key}: {target.examples} mutants from seeds {first}..{seed_value - 1}, "
          f"{target.opened} still opened")


def test_framing_sources_are_what_they_claim(files: FixtureFiles, tmp_path: Path) -> None:
    """The unmutated framing fixtures open (the plain pickle is refused as no checkpoint)."""
    from core.errors import UnsupportedFormat

    sources = framing_sources(files, tmp_path / "sources")
    for key in ("legacy_padded_magic", "legacy_octal_magic", "legacy_long1_magic",
                "zip_code_folder"):
        assert open_checkpoint(sources[key]).all_tensors(), key
    for key, places in (("safetensors_polyglot", 1), ("safetensors_inner_pickles", 2)):
        ckpt = open_checkpoint(sources[key])
        found = [(f.kind, f.severity) for f in ckpt.findings]
        assert ckpt.all_tensors() and found == [("embedded-pickle", "info")] * places, key
    with pytest.raises(UnsupportedFormat):
        open_checkpoint(sources["plain_pickle_framed"])

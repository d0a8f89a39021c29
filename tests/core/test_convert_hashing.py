"""The source pass starts before the job is planned: ranges named later are still checksummed whole."""

from __future__ import annotations

import hashlib
import os
import time

import blake3
import pytest

from core.convert.checksums import checksum
from core.convert.hashing import SourceHasher, _RangeChecksums
from core.errors import CorruptFile

DATA = os.urandom(3 << 20)
RANGES = {"head": (0, 1000), "across": (500_000, 2_500_000), "inner": (600_000, 700_000),
          "tail": (len(DATA) - 4096, len(DATA)), "empty": (10, 10)}


def test_ranges_behind_the_pass_are_caught_up(tmp_path):
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        done = 1_000_000  # "head", "inner" behind; "across" half behind; "tail" ahead
        running = _RangeChecksums(RANGES, f.fileno(), done)
        view = memoryview(DATA)
        for pos in range(done, len(DATA), 65536):
            running.update(view[pos:pos + 65536], pos)
    assert running.digests() == {k: checksum(DATA[a:b]) for k, (a, b) in RANGES.items()}


@pytest.mark.parametrize(("algorithm", "reference"), [("blake3", lambda data: blake3.blake3(data)),
                                                      ("sha256", hashlib.sha256)])
def test_ranges_named_after_the_pass_ended(tmp_path, algorithm, reference):
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    hasher = SourceHasher(path, algorithm=algorithm)
    time.sleep(0.5)  # 3 MB: read by now, the pass waits for its ranges (mid-pass works the same)
    hasher.watch(RANGES)
    assert hasher.digest() == reference(DATA).hexdigest()
    assert hasher.checksums() == {k: checksum(DATA[a:b]) for k, (a, b) in RANGES.items()}
    hasher.stop()


def test_a_range_the_file_no_longer_holds_is_a_truncated_file(tmp_path):
    path = tmp_path / "src.bin"
    path.write_bytes(DATA[:1000])
    with open(path, "rb") as f, pytest.raises(CorruptFile, match="truncated"):
        _RangeChecksums({"w": (500, 5000)}, f.fileno(), 6000)

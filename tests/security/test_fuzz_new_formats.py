"""Damaged GGUF files and sharded .bin checkpoints: every cut and scramble is one sentence."""

from __future__ import annotations

import contextlib
import random

import pytest

from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.tensor_io import read_tensor
from tests.core.test_hf_bin_shards import tiny_state_dict, write_bin_shards


def open_and_read_all(path) -> bool:
    """True when the file opened; a damaged file may only raise CheckpointError."""
    try:
        ckpt = open_checkpoint(path)
    except CheckpointError as exc:
        assert exc.message and "\n" not in exc.message
        return False
    for info in ckpt.all_tensors():
        with contextlib.suppress(CheckpointError):
            read_tensor(info)
    return True


def test_gguf_cuts_and_scrambles(tmp_path):
    pytest.importorskip("gguf", reason="the gguf package is not installed")
    from tests.core.test_gguf_reader import write_gguf

    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    data = path.read_bytes()
    damaged = tmp_path / "damaged.gguf"
    for cut in range(4, len(data), max(len(data) // 80, 1)):
        damaged.write_bytes(data[:cut])
        open_and_read_all(damaged)
    rng = random.Random(3)
    opened = 0
    for _ in range(200):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(4, len(buf))] = rng.randrange(256)
        damaged.write_bytes(bytes(buf))
        opened += open_and_read_all(damaged)
    assert opened > 0  # most flips land in tensor data, which still opens


def test_bin_shard_cuts_and_scrambles(tmp_path):
    index = write_bin_shards(tmp_path / "m", tiny_state_dict())
    shard = sorted((tmp_path / "m").glob("pytorch_model-*.bin"))[0]
    data = shard.read_bytes()
    rng = random.Random(4)
    for cut in list(range(1, len(data), max(len(data) // 40, 1))):
        shard.write_bytes(data[:cut])
        open_and_read_all(index)
    for _ in range(100):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        shard.write_bytes(bytes(buf))
        open_and_read_all(index)
    index.write_text('{"weight_map": {"a": "../escape.bin"}}')
    assert not open_and_read_all(index)

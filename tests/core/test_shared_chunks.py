"""The hash pass lends its chunks to the cast: the cast reads the source once, and still gets
exactly the source's bytes whatever order it asks in, whatever the pass is doing."""

from __future__ import annotations

import threading

import blake3
import pytest
import torch
from safetensors.torch import load_file

from core.convert import ConvertOptions, convert, hashing
from core.convert.hashing import SourceHasher
from core.convert.shared_chunks import SLOTS, SharedChunks
from core.errors import Cancelled
from core.progress import Recorder

CHUNK = 64


def lender(tmp_path, wanted: list[tuple[int, int]]) -> SharedChunks:
    chunks = SharedChunks(tmp_path / "f", CHUNK)
    chunks.want(wanted)
    return chunks


def published(chunks: SharedChunks, data: bytes, upto: int) -> None:
    """Play the pass: read and publish `data` chunk by chunk up to `upto`."""
    for at in range(0, upto, CHUNK):
        slot = chunks.slot(threading.Event())
        assert slot is not None
        n = min(CHUNK, len(data) - at)
        slot[:n] = data[at:at + n]
        chunks.publish(at, slot, n)


def test_pieces_are_the_source_bytes_cut_at_chunk_ends_on_whole_elements(tmp_path):
    data = bytes(range(256))
    chunks = lender(tmp_path, [(4, 200)])
    chunks.start(0)
    published(chunks, data, 3 * CHUNK)
    first = chunks.piece(4, 200, 8)
    assert bytes(first) == data[4:60]  # 56 bytes: the 8-byte element at 60..68 spans two chunks
    assert chunks.piece(60, 200, 8) is None  # that element: the caller reads it itself
    assert bytes(chunks.piece(68, 200, 4)) == data[68:128]
    assert bytes(chunks.piece(128, 150, 2)) == data[128:150]


def test_the_pass_waits_for_a_free_slot_until_the_cast_moves_past_a_chunk(tmp_path):
    data = bytes(CHUNK * (SLOTS + 1))
    chunks = lender(tmp_path, [(0, len(data))])
    chunks.start(0)
    published(chunks, data, SLOTS * CHUNK)  # every slot lent out
    got: list[bytearray | None] = []
    waiting = threading.Thread(target=lambda: got.append(chunks.slot(threading.Event())), daemon=True)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and not got
    chunks.piece(CHUNK, len(data), 1)  # past the first chunk: it is given back
    waiting.join(5)
    assert got and got[0] is not None


def test_asking_far_ahead_gives_back_what_the_pass_lends_on_the_way(tmp_path):
    data = bytes(range(256)) * 8  # 32 chunks, all wanted: the pass must go through 31 first
    chunks = lender(tmp_path, [(0, len(data))])
    chunks.start(0)
    the_pass = threading.Thread(target=published, args=(chunks, data, len(data)), daemon=True)
    the_pass.start()
    last = len(data) - CHUNK
    got: list[bytes] = []
    asking = threading.Thread(target=lambda: got.append(bytes(chunks.piece(last, len(data), 4))),
                              daemon=True)
    asking.start()
    asking.join(10)
    the_pass.join(5)
    assert not asking.is_alive() and not the_pass.is_alive(), "the pass and the cast wait on each other"
    assert got == [data[last:]]


def test_bytes_the_pass_cannot_lend_are_read_by_the_caller(tmp_path):
    data = bytes(range(256))
    chunks = lender(tmp_path, [(0, 256), (300, 400)])
    assert chunks.piece(290, 400, 1) is None  # not a byte that is cast
    chunks.start(CHUNK)  # it went by the first chunk before the ranges were named
    assert chunks.piece(0, 256, 1) is None
    slot = chunks.slot(threading.Event())
    slot[:CHUNK] = data[CHUNK:2 * CHUNK]
    chunks.publish(CHUNK, slot, CHUNK)
    assert bytes(chunks.piece(CHUNK, 256, 1)) == data[CHUNK:2 * CHUNK]
    assert chunks.piece(10, 256, 1) is None  # behind what it lends: given back already
    chunks.end()  # end of file, stopped or failed: nothing more comes
    assert chunks.piece(3 * CHUNK, 256, 1) is None
    chunks.close()
    assert chunks.piece(CHUNK, 256, 1) is None


def test_the_cast_waits_for_the_pass_to_begin_lending(tmp_path):
    data = bytes(range(CHUNK))
    chunks = lender(tmp_path, [(0, CHUNK)])
    got: list[memoryview | None] = []
    asking = threading.Thread(target=lambda: got.append(chunks.piece(0, CHUNK, 1)), daemon=True)
    asking.start()
    asking.join(0.3)
    assert asking.is_alive()  # no read of its own while the pass is about to lend these bytes
    chunks.start(0)
    published(chunks, data, CHUNK)
    asking.join(5)
    assert got and bytes(got[0]) == data


def test_a_pass_that_ends_before_lending_lends_nothing(tmp_path):
    chunks = lender(tmp_path, [(0, CHUNK)])
    chunks.end()  # a small file: hashed before the job was planned
    assert chunks.piece(0, CHUNK, 1) is None


def test_a_stopped_pass_gets_no_slot(tmp_path):
    chunks = lender(tmp_path, [(0, 10)])
    stopped = threading.Event()
    stopped.set()
    assert chunks.slot(stopped) is None


@pytest.fixture
def lending(monkeypatch):
    """Small chunks, the pass held back until the job is planned (so it lends from byte 0), and a
    count of the pieces the cast took from it."""
    monkeypatch.setattr(hashing, "BUFFER", 4096)
    run = SourceHasher._run

    def held_back(self):
        self._watched.wait()
        run(self)

    monkeypatch.setattr(SourceHasher, "_run", held_back)
    served = []
    piece = SharedChunks.piece

    def counted(self, at, end, size):
        got = piece(self, at, end, size)
        served.append(got is not None)
        return got

    monkeypatch.setattr(SharedChunks, "piece", counted)
    return served


def mixed_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    base = torch.randn(3000)
    return {"a.weight": torch.randn(70, 33), "b.double": torch.randn(500, dtype=torch.float64),
            "c.bias": torch.randn(7), "d.steps": torch.arange(900),
            "e.view": base[1:2500], "f.view": base[1000:3000], "g.half": torch.randn(999).half(),
            "h.big": torch.randn(5000)}


@pytest.mark.parametrize("target", ["safetensors", "safetensors-sharded"])
@pytest.mark.parametrize(("dtype", "torch_dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_a_cast_from_lent_chunks_is_bit_exact(tmp_path, lending, target, dtype, torch_dtype):
    state = mixed_state_dict()
    src = tmp_path / "model.pt"
    torch.save(state, src)
    out = tmp_path / ("out" if target.endswith("sharded") else "out.safetensors")
    result = convert(src, out, target, ConvertOptions(dtype=dtype), max_shard_size=
                     30_000 if target.endswith("sharded") else None)
    assert sum(lending) >= 0.8 * len(lending), lending  # float64 first: out of file order
    assert result.source_hash["digest"] == blake3.blake3(src.read_bytes()).hexdigest()
    files = sorted(out.glob("*.safetensors")) if out.is_dir() else [out]
    got = {k: v for f in files for k, v in load_file(f).items()}
    for name, tensor in state.items():
        want = tensor.to(torch_dtype) if tensor.is_floating_point() else tensor
        assert got[name].dtype == want.dtype, name
        assert torch.equal(bits(got[name]), bits(want)), name


def bits(tensor: torch.Tensor) -> torch.Tensor:
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return tensor.contiguous().view(-1).view(ints[tensor.element_size()])


def test_cancelling_while_the_pass_lends_chunks_stops_both(tmp_path, lending):
    src = tmp_path / "model.pt"
    torch.save(mixed_state_dict(), src)
    out = tmp_path / "out.safetensors"
    raised: list[BaseException] = []

    def run() -> None:
        try:
            convert(src, out, "safetensors", ConvertOptions(dtype="bf16"),
                    progress=Recorder(cancel_after=3))
        except BaseException as exc:  # noqa: BLE001 - looked at below, in the test's thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    assert raised and isinstance(raised[0], Cancelled)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in {"model.pt"}]

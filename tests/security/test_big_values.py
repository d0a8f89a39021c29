"""A legitimate file of many plain values opens in memory bounded by torch.load's, and running out
of memory anywhere while opening is one plain sentence, never a traceback or exit 3.

The 6-million-key case itself (time and RSS against torch.load) is `tests/bench/bench_big_dict.py`;
here a smaller dict pins the same bound on the Python heap, measured for both in this process.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
import torch

from core.cli.main import main as cli_main
from core.errors import CorruptFile
from core.formats import open_checkpoint
from tests.fixtures.models import FixtureFiles

KEYS = 50_000


def _peak(load: object) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        value = load()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1], value
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("keys", ["int", "text"])
def test_big_plain_dict_opens_within_twice_torchs_memory(tmp_path: Path, keys: str) -> None:
    path = tmp_path / "big.pt"
    torch.save({(i if keys == "int" else f"k{i}"): i for i in range(KEYS)}, path)
    torch_peak, loaded = _peak(lambda: torch.load(path, weights_only=True))
    del loaded
    our_peak, ckpt = _peak(lambda: open_checkpoint(path))
    values = ckpt.sections["training"].values
    assert len(values) == KEYS and values["49999" if keys == "int" else "k49999"] == KEYS - 1
    print(f"{keys} keys: ours {our_peak / 1e6:.0f} MB, torch {torch_peak / 1e6:.0f} MB")
    assert our_peak <= 2 * torch_peak, (our_peak, torch_peak)


@pytest.mark.parametrize("where", ["core.formats.pickle_vm._Machine.run",
                                   "core.layout.build_sections"])
def test_running_out_of_memory_is_one_plain_sentence(files: FixtureFiles, where: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(where, out_of_memory)
    with pytest.raises(CorruptFile) as caught:
        open_checkpoint(files["state_dict"])
    assert caught.value.message.endswith(".") and "\n" not in caught.value.message
    assert cli_main(["inspect", str(files["state_dict"])]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and "MemoryError" not in captured.out

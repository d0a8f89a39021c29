"""Errors carry their cause without --verbose: torch's own words, the keys that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.cli.main import EXIT_ERROR, main

ARCH = '''
from torch import nn

class Net(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(16, hidden)
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())

def build():
    return Net()

def narrower():
    net = Net(hidden=8)
    net.extra = nn.Linear(2, 2)
    return net
'''


@pytest.fixture()
def mynet(tmp_path: Path, monkeypatch) -> Path:
    """A folder with mynet.py and model.pt (its weights), as the current folder."""
    import importlib.util

    (tmp_path / "mynet.py").write_text(ARCH)
    monkeypatch.chdir(tmp_path)

    spec = importlib.util.spec_from_file_location("mynet_fixture", tmp_path / "mynet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.build().state_dict(), tmp_path / "model.pt")
    return tmp_path


def test_a_wrong_input_shape_shows_torchs_words(mynet: Path, capsys) -> None:
    code = main(["export", "model.pt", "--arch", "mynet.py:build", "--input",
                 "x: float32[batch(1..64), 17]", "--to", "onnx", "--out-dir", "out"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1
    assert "mat1 and mat2 shapes cannot be multiplied (2x17 and 16x32)" in err
    assert not list(mynet.glob("out/*.onnx"))


def test_weights_that_do_not_fit_name_keys_and_the_next_step(mynet: Path, capsys) -> None:
    code = main(["export", "model.pt", "--arch", "mynet.py:narrower", "--input",
                 "x: float32[batch(1..64), 16]", "--to", "onnx", "--out-dir", "out"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and len(err.strip().splitlines()) == 1
    assert "weights do not fit this architecture" in err
    assert "2 missing: extra.weight, extra.bias" in err or "2 missing: extra.bias, extra.weight" in err
    assert "3 with a different shape: fc1.weight, fc1.bias, fc2.weight" in err
    assert "`ckpt-studio diff model.pt --model mynet.py:narrower` lists every key" in err
    assert "--non-strict" in err


def test_many_keys_are_cut_to_the_first_few() -> None:
    from core.arch import LoadReport

    report = LoadReport("model", missing=[f"layers.{i}.weight" for i in range(10)])
    message = report.error().message
    assert "10 missing: layers.0.weight, layers.1.weight, layers.2.weight and 7 more" in message
    assert "layers.3.weight" not in message and "layers.3.weight" in report.error().details

"""The value diff's relative change ||B−A|| / ||A|| per tensor (the diff view plots it), also in the
CLI's JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.cli.main import main


def test_rel_change_in_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    a = {"same": torch.randn(50), "moved": torch.randn(40, 3), "from_zero": torch.zeros(8)}
    b = {"same": a["same"].clone(), "moved": a["moved"] * 1.5, "from_zero": torch.ones(8)}
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    main(["diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--values", "--json"])
    keys = {k["name"]: k["values"] for k in json.loads(capsys.readouterr().out)["sections"][0]["keys"]}
    assert keys["same"]["rel_change"] == 0.0
    expected = float((b["moved"] - a["moved"]).norm() / a["moved"].norm())
    assert keys["moved"]["rel_change"] == pytest.approx(expected, rel=1e-5)
    assert keys["moved"]["rel_change"] == pytest.approx(0.5, rel=1e-5)
    assert keys["moved"]["rel_l2"] == pytest.approx(0.5 / 1.5, rel=1e-5)  # relative to B, unchanged
    assert math.isinf(keys["from_zero"]["rel_change"])

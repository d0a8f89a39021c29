"""`convert --keep-training`: the weights keep their names (the file still loads into the model),
training state goes under its own key, and `inspect` gives each its section and role."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from core.cli.main import EXIT_OK, main
from tests.fixtures.models import tiny_model


@pytest.mark.parametrize("layout, state_key", [("training", "optimizer_state_dict"),
                                               ("lightning", "optimizer_states")])
def test_weights_keep_their_names_and_training_state_its_key(files, tmp_path, layout, state_key,
                                                             capsys):
    out = tmp_path / "all.safetensors"
    assert main(["convert", str(files[layout]), "--keep-training", "-o", str(out)]) == EXIT_OK
    written = load_file(out)
    model_keys = set(tiny_model().state_dict())
    weights = {k: v for k, v in written.items() if not k.startswith(state_key + ".")}
    prefix = "model." if layout == "lightning" else ""  # Lightning's own names stay as they were
    assert set(weights) == {prefix + k for k in model_keys} - {prefix + "head.weight"}  # tied: once
    assert any(k.startswith(f"{state_key}.") and k.endswith(".exp_avg") for k in written)
    capsys.readouterr()

    assert main(["inspect", "--json", str(out)]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    sections = {s["name"]: s for s in data["sections"]}
    assert data["weights"] == "model" and set(sections) == {"model", "optimizer"}
    assert {t["name"] for t in sections["model"]["tensors"]} == {prefix + k for k in model_keys}
    assert {t["role"] for t in sections["optimizer"]["tensors"]} == {"unknown"}
    assert not any(t["role"] == "unknown" for t in sections["model"]["tensors"])


def test_the_kept_weights_load_into_the_model(files, tmp_path):
    out = tmp_path / "all.pt"
    assert main(["convert", str(files["training"]), "--keep-training", "--to", "pt", "-o",
                 str(out)]) == EXIT_OK
    written = torch.load(out, weights_only=True)
    model = tiny_model(seed=5)
    state = {k: v for k, v in written.items() if not k.startswith("optimizer_state_dict.")}
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.fc.weight, files.model.fc.weight)


def test_a_model_whose_names_only_look_like_training_state_stays_whole(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    from safetensors.torch import save_file

    save_file({"optimizer.lstm.weight": torch.zeros(2), "encoder.weight": torch.zeros(2)}, path)
    assert main(["inspect", "--json", str(path)]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["sections"]] == ["model"]
    assert data["totals"]["tensors"] == 2

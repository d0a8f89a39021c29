"""`ckpt-studio identify` as a user runs it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

import torch  # noqa: E402

from core.cli.main import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, main  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


def test_folder_text_and_json(tmp_path, capsys):
    folder = hf_folders.vit_folder(tmp_path / "vit")
    capsys.readouterr()
    assert main(["identify", str(folder)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ViT" in out and "ViTForImageClassification" in out and "image-classification" in out
    assert main(["identify", str(folder), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "config.json" and data["determined"]["image_size"] == 32


def test_bare_state_dict_lists_what_the_shapes_cannot_tell(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    path = tmp_path / "bert.pt"
    torch.save(BertModel(BertConfig(**hf_folders.BERT)).state_dict(), path)
    assert main(["identify", str(path), "--json"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "BERT" and data["determined"]["hidden_size"] == 32
    assert "num_attention_heads" in data["undetermined"]


def test_not_recognised_and_bad_path(tmp_path, capsys):
    path = tmp_path / "w.pt"
    torch.save({"x": torch.zeros(3)}, path)
    assert main(["identify", str(path)]) == EXIT_FINDINGS
    assert "not recognised" in capsys.readouterr().out
    assert main(["identify", str(tmp_path / "missing.pt")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "Traceback" not in err

"""A Hugging Face folder through the commands: export with no --arch, then parity and latency with
the folder itself as the reference (the transformers model in eager mode)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

from core.cli.main import EXIT_OK, main  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = hf_folders.sentence_transformers_folder(tmp_path_factory.mktemp("hf") / "minilm")
    out = tmp_path_factory.mktemp("out")
    return folder, out


def test_export_folder_then_check_it(exported, capsys):
    folder, out = exported
    capsys.readouterr()
    code = main(["export", str(folder), "--to", "onnx", "--out-dir", str(out), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, data
    [result] = data["results"]
    assert result["ok"] and result["input_names"] == ["input_ids", "attention_mask",
                                                       "token_type_ids"]
    assert result["output_names"] == ["last_hidden_state", "pooler_output"]
    assert data["hf"]["task"] == "feature-extraction" and data["weights"]["ok"]
    assert "embeddings.position_ids" in data["weights"]["ignored"]
    assert "padded" in data["inputs"]

    code = main(["check", "parity", str(folder), result["path"], "--json",
                 "--save-dir", str(out / "fail")])
    parity = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and parity["passed"]
    assert len(parity["cases"]) >= 2
    assert parity["reference"]["backend"] == "eager"
    assert "padded" in parity["settings"]["inputs"]


def test_pooled_export_and_parity_with_kwargs(exported, capsys):
    folder, out = exported
    capsys.readouterr()
    code = main(["export", str(folder), "--pooling", "--name", "pooled", "--to", "onnx",
                 "--out-dir", str(out)])
    text = capsys.readouterr().out
    assert code == EXIT_OK and "pooling inside the graph: mean_tokens, L2-normalised" in text
    onnx_path = out / "pooled.onnx"
    code = main(["check", "parity", str(folder), str(onnx_path), "--kwargs", '{"pooling": true}',
                 "--shapes", "batch=3,sequence=12", "batch=1,sequence=40", "--json",
                 "--save-dir", str(out / "fail")])
    parity = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and parity["passed"] and len(parity["cases"]) == 2
    assert list(parity["worst_max_abs_diff"]) == ["sentence_embedding"]

    code = main(["check", "latency", str(folder), str(onnx_path), "--kwargs", '{"pooling": true}',
                 "--batches", "1,2", "--runs", "3", "--warmup", "1", "--json"])
    latency = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, latency

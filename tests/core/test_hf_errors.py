"""Bad Hugging Face folders: one plain sentence each, no traceback, no output file, no code run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

from core.cli.main import EXIT_ERROR, main  # noqa: E402
from tests.fixtures import hf_folders  # noqa: E402


def _export(folder: Path, out: Path, capsys, *extra: str) -> str:
    capsys.readouterr()  # what building the fixture printed (save_pretrained's progress bar)
    code = main(["export", str(folder), "--to", "onnx", "--out-dir", str(out), *extra])
    captured = capsys.readouterr()
    assert code == EXIT_ERROR
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists() or not any(out.iterdir())  # nothing written
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def _config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_folder_without_weights(tmp_path, capsys):
    folder = _config(tmp_path / "m", {"model_type": "bert", "architectures": ["BertModel"]})
    message = _export(folder, tmp_path / "out", capsys)
    assert "holds no model weights" in message and "model.safetensors" in message


def test_unknown_model_type(tmp_path, capsys):
    folder = hf_folders.bert_folder(tmp_path / "m")
    _config(folder, {"model_type": "frobnicator", "architectures": ["FrobModel"]})
    message = _export(folder, tmp_path / "out", capsys)
    assert "'frobnicator'" in message and "update transformers" in message


def test_config_needing_remote_code_is_never_run(tmp_path, capsys):
    folder = hf_folders.bert_folder(tmp_path / "m")
    (folder / "modeling_evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    _config(folder, {"model_type": "evil", "architectures": ["EvilModel"],
                     "auto_map": {"AutoModel": "modeling_evil.EvilModel"}})
    message = _export(folder, tmp_path / "out", capsys)
    assert "code shipped with the folder" in message and "never run" in message
    assert not (tmp_path / "ran").exists()


def test_weights_that_do_not_fit_the_config(tmp_path, capsys):
    folder = hf_folders.bert_folder(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 64  # the weights were saved with 40
    (folder / "config.json").write_text(json.dumps(config))
    message = _export(folder, tmp_path / "out", capsys)
    assert "do not fit the model its config.json describes" in message
    assert "with a different shape" in message


def test_config_without_model_type(tmp_path, capsys):
    folder = hf_folders.bert_folder(tmp_path / "m")
    _config(folder, {"architectures": ["BertModel"]})
    assert "names no model_type" in _export(folder, tmp_path / "out", capsys)


def test_folder_without_config(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    assert "has no config.json" in _export(tmp_path / "m", tmp_path / "out", capsys)


def test_task_the_model_type_has_no_class_for(tmp_path, capsys):
    folder = hf_folders.vit_folder(tmp_path / "m")
    message = _export(folder, tmp_path / "out", capsys, "--task", "causal-lm")
    assert "no causal-lm model" in message


def test_pooling_without_modules_json(tmp_path, capsys):
    folder = hf_folders.bert_folder(tmp_path / "m")
    assert "not a sentence-transformers model" in _export(folder, tmp_path / "out", capsys,
                                                          "--pooling")

"""core.hf.config.runnable_label: what a model folder runs as, read from config.json alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from core.errors import ExportError
from core.hf.config import runnable_label


def folder(tmp_path: Path, **config: object) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(("config", "task", "pooling", "label"), [
    ({"model_type": "bert", "architectures": ["BertModel"]}, None, False,
     "Hugging Face: BertModel (feature-extraction)"),
    ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, None, False,
     "Hugging Face: AutoModel for 'bert' (feature-extraction)"),
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, None, False,
     "Hugging Face: GPT2LMHeadModel (causal-lm)"),
    ({"model_type": "bert", "architectures": ["BertModel"]}, "text-classification", False,
     "Hugging Face: AutoModelForSequenceClassification for 'bert' (text-classification)"),
    ({"model_type": "bert", "architectures": ["BertModel"]}, None, True,
     "Hugging Face: BertModel (feature-extraction) + sentence pooling"),
    ({"model_type": "vit"}, None, False, "Hugging Face: AutoModel for 'vit' (feature-extraction)"),
])
def test_labels(tmp_path: Path, config: dict, task: str | None, pooling: bool, label: str) -> None:
    assert runnable_label(folder(tmp_path, **config), task, pooling) == label


def test_no_transformers_import_and_plain_errors(tmp_path: Path) -> None:
    path = folder(tmp_path, model_type="bert", architectures=["BertModel"])
    with pytest.raises(ExportError, match="'summarise' is not a task"):
        runnable_label(path, "summarise")
    with pytest.raises(ExportError, match="has no config.json"):
        runnable_label(tmp_path / "missing")
    if "transformers" not in sys.modules:  # only provable when nothing imported it before
        runnable_label(path)
        assert "transformers" not in sys.modules

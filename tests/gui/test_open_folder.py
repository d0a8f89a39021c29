"""A Hugging Face model folder dropped on the window (or chosen with File ▸ Open Folder) opens as its
weights, with the config summary beside the tensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from safetensors.torch import save_file

from gui.app import MainWindow
from gui.views.inspect import InspectView
from tests.gui.bert_like import bert_state_dict
from tests.gui.conftest import wait_done
from tests.gui.test_inspect_view import drop

CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 16,
          "num_hidden_layers": 12, "vocab_size": 120, "torch_dtype": "float32"}


def model_folder(root: Path, config: bool = True) -> Path:
    folder = root / "tiny-bert"
    folder.mkdir()
    save_file(bert_state_dict(), folder / "model.safetensors")
    if config:
        (folder / "config.json").write_text(json.dumps(CONFIG | {"unrelated": [1, 2]}))
    return folder


def test_dropped_folder_shows_tensors_and_config(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    drop(window, [folder])
    [view] = window.views()
    assert isinstance(view, InspectView)
    wait_done(qtbot, view)
    assert view.state == "ready", view.message.message.text()
    assert view.tensors.table_model.rowCount() == len(bert_state_dict()) == 199
    box = view.config
    assert box.isVisible() and box.title() == "Model config"
    texts = {key: label.text() for key, label in box.values.items()}
    assert texts == {"model_type": "bert", "architectures": "BertModel", "hidden_size": "16",
                     "num_hidden_layers": "12", "vocab_size": "120", "torch_dtype": "float32",
                     "weights_file": "model.safetensors"}
    assert window.tabs.tabText(window.tabs.currentIndex()) == "tiny-bert"


def test_folder_without_config_and_a_plain_file(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    folder = model_folder(tmp_path, config=False)
    view = wait_done(qtbot, window.open_path(folder))
    assert view.state == "ready" and view.config.isVisible()
    assert view.config.title() == "Model folder (no config.json)"
    assert not view.config.values["model_type"].isVisibleTo(view.config)
    plain = wait_done(qtbot, window.open_path(folder / "model.safetensors"))
    assert plain.state == "ready" and not plain.config.isVisibleTo(plain)  # a file alone: no box


def test_empty_folder_is_one_sentence(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    view = wait_done(qtbot, window.open_path(tmp_path / "empty"))
    assert view.state == "error"
    assert "holds no model weights" in view.message.message.text()


def test_open_folder_menu(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model_folder(tmp_path)
    monkeypatch.setattr("gui.app.QFileDialog.getExistingDirectory", lambda *_a, **_k: str(folder))
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if "Folder" in a.text())
    action.trigger()
    [view] = window.views()
    wait_done(qtbot, view)
    assert view.state == "ready" and view.config.values["model_type"].text() == "bert"

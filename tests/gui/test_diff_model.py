"""The diff view with a model as side B (`ckpt-studio diff A --model SOURCE` in the GUI): type the
architecture (and its JSON arguments) in the model form, compare, and read the load_state_dict-style
summary and the table; bad sources give a plain sentence and keep the diff that was shown."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from core.diff.structure import ONLY_A, ONLY_B, SAME, SHAPE
from gui.app import MainWindow
from gui.models import diff_table
from gui.views.diff import DiffView
from gui.views.diff_model import ModelSource
from tests.fixtures.export_models import mlp
from tests.fixtures.models import FixtureFiles
from tests.gui.test_diff_view import open_diff, rows, wait_diff

TINY = "tests.fixtures.models:TinyNet"
MLP = "tests.fixtures.export_models:mlp"
MODEL_PY = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Linear(3, width)
        self.register_buffer("scale", torch.ones(width))
'''


def compare_with_model(qtbot: QtBot, view: DiffView, source: str, kwargs: str = "",
                       ok: bool = True) -> str:
    """Fill the model form and click Compare; wait for the new diff (or the error). Returns the
    banner text ("" on success)."""
    if not view.model_form.isVisible():
        qtbot.mouseClick(view.model_button, Qt.MouseButton.LeftButton)
    assert view.model_form.isVisible()
    view.model_form.source.edit.setText(source)
    view.model_form.kwargs.setText(kwargs)
    with qtbot.waitSignal(view.loaded if ok else view.failed, timeout=30_000):
        qtbot.mouseClick(view.model_form.compare_button, Qt.MouseButton.LeftButton)
    wait_diff(qtbot, view)
    return view.error.title.text() if view.error.isVisible() else ""


def status_texts(view: DiffView) -> dict[str, str]:
    """Shown rows: name -> the Status column's text."""
    model = view.model
    return {model.key(r).name: model.index(r, diff_table.STATUS).data() for r in range(model.rowCount())}


def no_message_boxes() -> bool:
    return not [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def test_a_matching_model_is_accepted(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    assert not view.model_form.isVisible()
    assert compare_with_model(qtbot, view, TINY) == ""
    assert view.state == "ready" and view.model_b == ModelSource(TINY)
    result = view.opened.result
    assert result.against_model and bool(result)
    assert view.summary.text() == "load_state_dict(strict=True) would accept this checkpoint (11 keys)."
    assert len(rows(view)) == 11 and set(rows(view).values()) == {SAME}
    assert view.count.text() == "11 keys"
    assert "tests.fixtures.models:TinyNet" in view.side_b.text()
    assert "model · 11 keys expected" in view.side_b.text()
    assert view.status_buttons[ONLY_A].text() == "Unexpected  0"
    assert view.status_buttons[ONLY_B].text() == "Missing  0"
    assert not view.compare_button.isEnabled()  # a model built on the meta device has no values
    assert window.tabs.tabText(0) == f"state_dict.pt ⟷ {TINY}"


def test_missing_unexpected_and_size_mismatch_rows(qtbot: QtBot, window: MainWindow,
                                                   files: FixtureFiles, tmp_path: Path) -> None:
    state = mlp(features=6).state_dict()
    bias = next(k for k in state if k.endswith("bias"))
    state["extra.scale"] = state.pop(bias)
    a = tmp_path / "mlp6.pt"
    torch.save(state, a)
    view = open_diff(qtbot, window, a, files["state_dict"])
    assert compare_with_model(qtbot, view, MLP) == ""  # mlp() is built with features=8
    summary = view.summary.text()
    assert summary.startswith("load_state_dict(strict=True) would fail: 1 missing, 1 unexpected, "
                              "1 size mismatch(es).")
    texts = status_texts(view)
    assert texts["extra.scale"] == "Unexpected" and texts[bias] == "Missing"
    assert list(texts.values()).count("Size mismatch") == 1
    assert view.status_buttons[SHAPE].text() == "Size mismatch  1"
    view.status_buttons[SAME].click()
    assert len(rows(view)) == 3 and view.count.text() == f"3 of {len(texts)} keys"

    view.status_buttons[SAME].click()
    assert compare_with_model(qtbot, view, MLP, '{"features": 6}') == ""  # the kwargs reach the model
    assert view.model_b == ModelSource(MLP, '{"features": 6}')
    assert 'model · {&quot;features&quot;: 6} · 4 keys expected' in view.side_b.text()  # rich text
    assert view.summary.text().startswith(
        "load_state_dict(strict=True) would fail: 1 missing, 1 unexpected, 0 size mismatch(es).")
    assert view.opened.result.totals[SHAPE] == 0


def test_a_model_from_a_python_file(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    code = tmp_path / "model.py"
    code.write_text(MODEL_PY)
    a = tmp_path / "net.pt"
    torch.save({"body.weight": torch.zeros(4, 3), "body.bias": torch.zeros(4),
                "scale": torch.ones(4)}, a)
    b = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(2)}, b)
    view = open_diff(qtbot, window, a, b)
    assert compare_with_model(qtbot, view, f"{code}:Net") == ""
    assert view.summary.text() == "load_state_dict(strict=True) would accept this checkpoint (3 keys)."
    assert "model.py:Net" in view.side_b.text()
    assert compare_with_model(qtbot, view, f"{code}:Net", '{"width": 5}') == ""
    assert "3 size mismatch(es)" in view.summary.text()


@pytest.mark.parametrize(("source", "kwargs", "expected"), [
    ("tests.fixtures.no_such_module:build", "",
     "The module 'tests.fixtures.no_such_module' could not be found; check the name, or run from "
     "the folder that holds it."),
    ("tests.fixtures.export_models:no_such_builder", "",
     "'tests.fixtures.export_models' has no 'no_such_builder' to build the model with."),
    ("tests.fixtures.export_models:broken", "",
     "Building the model with 'tests.fixtures.export_models:broken' failed: ValueError: this "
     "builder always fails"),
    (MLP, "{features: 6}", "The architecture's keyword arguments are not valid JSON; write them "
     'like {"channels": 8}.'),
    ("model.py", "", "Name the function or class to call in 'model.py', e.g. 'model.py:build'."),
    ("", "", "Give the model's architecture: package.module:build or model.py:build."),
])
def test_a_bad_model_is_a_plain_sentence(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                                         source: str, kwargs: str, expected: str) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    message = compare_with_model(qtbot, view, source, kwargs, ok=False)
    assert message == expected
    assert "Traceback" not in message and no_message_boxes()
    assert view.state == "ready" and view.model_b is None  # the file diff is still shown
    assert view.opened.result.totals[ONLY_A] == 11 and len(rows(view)) == 22
    assert view.model_form.compare_button.isEnabled()
    assert view.model_form.source.text() == source  # left as typed, to correct it


def test_a_saved_model_file_is_refused_before_running(qtbot: QtBot, window: MainWindow,
                                                      files: FixtureFiles) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    message = compare_with_model(qtbot, view, str(files["torchscript"]), ok=False)
    assert message.startswith(f"'{files['torchscript'].name}' is a file; give the code that builds "
                              "the model instead")
    assert not view.is_busy() and no_message_boxes()


def test_remap_against_a_model_then_back_to_a_file(qtbot: QtBot, window: MainWindow,
                                                   files: FixtureFiles, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """As `diff dp.pth --model SOURCE --apply-remap out.safetensors`, then B a file again."""
    view = DiffView(files["data_parallel"], ModelSource(TINY))
    qtbot.addWidget(view)
    view.show()
    wait_diff(qtbot, view)
    assert view.state == "ready" and view.model_form.isVisible()
    assert view.model_form.source.text() == TINY and view.model_button.isChecked()
    assert view.summary.text().startswith("load_state_dict(strict=True) would fail: 11 missing, "
                                          "11 unexpected, 0 size mismatch(es).")
    assert "The remap suggestions explain 11 key(s)." in view.summary.text()
    item = view.suggestions.tree.topLevelItem(0)
    assert item.text(0) == "remove the prefix 'module.'" and item.text(1) == "11"
    out = tmp_path / "fixed.safetensors"
    with qtbot.waitSignal(view.applied, timeout=20_000):
        view.apply_and_save(str(out))
    wait_diff(qtbot, view)
    assert view.path_a == str(out) and view.opened.result.against_model
    assert view.summary.text() == "load_state_dict(strict=True) would accept this checkpoint (11 keys)."

    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *_a, **_k: (str(files["state_dict"]), "")))
    with qtbot.waitSignal(view.loaded, timeout=20_000):
        qtbot.mouseClick(view.model_form.file_button, Qt.MouseButton.LeftButton)
    wait_diff(qtbot, view)
    assert view.model_b is None and view.path_b == str(files["state_dict"].resolve())
    assert not view.opened.result.against_model
    assert view.status_buttons[ONLY_A].text().startswith("Only in A")
    assert view.compare_button.isEnabled()

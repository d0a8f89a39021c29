"""The whole Hugging Face flow in the window, as a user does it, with no Python typed anywhere: drop a
model folder (config.json + model.safetensors from `save_pretrained`) -> it opens with its config ->
the export panel names it "Hugging Face: BertModel (feature-extraction)" with its real inputs ->
one click exports ONNX -> "Check parity…" runs the transformers model against the ONNX file.

Screenshots of each step go to $CKPT_STUDIO_SHOTS (a folder) or the test's tmp folder, for people to
look at."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from gui.app import MainWindow
from gui.views.export import ExportPanel
from gui.views.inspect import InspectView
from tests.gui.conftest import screenshot, wait_done
from tests.gui.test_inspect_view import drop

pytest.importorskip("transformers", reason="Hugging Face folders need transformers")
from tests.fixtures.hf_folders import BERT, bert_folder  # noqa: E402 - needs transformers

TITLE = "Hugging Face: BertModel (feature-extraction)"
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
SLOW_MS = 180_000  # imports torch, transformers and onnxruntime on a shared machine


def wait_finished(qtbot: QtBot, panel: QWidget, click: object) -> str:
    with qtbot.waitSignal(panel.finished, timeout=SLOW_MS) as blocker:
        click()  # type: ignore[operator]
    qtbot.waitUntil(lambda: not panel.bar.is_busy(), timeout=5_000)
    return blocker.args[0]


def test_drop_export_check(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    folder = bert_folder(tmp_path / "tiny-bert")
    drop(window, [folder])
    [view] = window.views()
    assert isinstance(view, InspectView)
    wait_done(qtbot, view)
    assert view.state == "ready", view.message.message.text()
    assert view.config.values["architectures"].text() == "BertModel"
    screenshot(window, tmp_path, "1-folder-dropped")

    window.panel_actions["export"].trigger()
    export = window.tabs.currentWidget()
    assert isinstance(export, ExportPanel)
    qtbot.waitUntil(lambda: export.hf.choice is not None, timeout=SLOW_MS)
    assert export.hf.title.text() == TITLE and export.hf.task.currentText() == "feature-extraction"
    assert [s.name for s in export.spec.specs()] == INPUTS
    assert export.source.text() == str(folder) and export.weights.text() == str(folder)
    out = tmp_path / "exported"
    out.mkdir()
    export.out_dir.set_text(str(out))
    export.torchscript.setChecked(False)
    screenshot(window, tmp_path, "2-export-preselected")
    assert wait_finished(qtbot, export, export.export_button.click) == "done", export.banner.message()
    onnx_file = out / "tiny-bert.onnx"
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    assert [i.name for i in graph.input] == INPUTS
    assert [o.name for o in graph.output] == ["last_hidden_state", "pooler_output"]
    export.table.selectRow(0)
    screenshot(window, tmp_path, "3-exported")

    export.parity_button.click()
    checks = window.tabs.currentWidget()
    assert type(checks).__name__ == "ChecksPanel"
    assert checks.reference.currentText() == TITLE
    assert checks.pickers[0].source() == str(folder)
    # the folder runs as it was exported: same task, pooling or not
    assert checks.pickers[0].runner_options() == {"task": "feature-extraction", "pooling": False}
    assert checks.candidate.currentText() == str(onnx_file)
    assert wait_finished(qtbot, checks, checks.parity_button.click) == "done", checks.banner.message()
    result = checks.parity
    assert result is not None and result.passed, checks.status.text()
    assert result.reference["backend"] == "eager" and result.candidate["backend"] == "onnxruntime"
    assert "padded" in result.settings["inputs"]
    ids = [c.input_shapes["input_ids"] for c in result.cases]
    assert len({tuple(shape) for shape in ids}) >= 2  # more than one batch/sequence shape
    assert all(shape[1] <= BERT["max_position_embeddings"] for shape in ids)
    screenshot(window, tmp_path, "4-parity-checked")

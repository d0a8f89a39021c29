"""The export wizard: load report, spec editor, export on the worker, plain errors, cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from gui.models.parity_table import status_color
from gui.views.export import ExportPanel
from tests.fixtures.export_models import SPECS, mlp
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import shown

SOURCE = "tests.fixtures.export_models:mlp"


@pytest.fixture()
def panel(qtbot: QtBot) -> ExportPanel:
    return shown(qtbot, ExportPanel())


def prepare(panel: ExportPanel, tmp_path: Path) -> Path:
    """mlp + its own weights, ONNX (legacy exporter: fast) + TorchScript into tmp_path/out."""
    out = tmp_path / "out"
    out.mkdir()
    weights = tmp_path / "mlp.pt"
    torch.save(mlp().state_dict(), weights)
    panel.source.set_text(SOURCE)
    panel.set_checkpoint(str(weights))
    panel.out_dir.set_text(str(out))
    panel.spec.set_text(SPECS["mlp"])
    panel.onnx_exporter.setCurrentText("legacy")
    return out


def run(qtbot: QtBot, panel: ExportPanel, action: Callable[[], object],
        timeout: int = 60_000) -> str:
    """Do `action` and wait for the panel's outcome ("done" | "error" | "cancelled")."""
    with qtbot.waitSignal(panel.finished, timeout=timeout) as blocker:
        action()
    qtbot.waitUntil(lambda: not panel.bar.is_busy(), timeout=5_000)
    return blocker.args[0]


def test_export_fills_the_results_table(qtbot: QtBot, panel: ExportPanel, tmp_path: Path) -> None:
    out = prepare(panel, tmp_path)
    assert run(qtbot, panel, panel.export_button.click) == "done", panel.banner.message()
    assert panel.report_title.text().startswith("✓ The weights fit the model: 4 tensors")
    model = panel.results_model
    rows = {model.data(model.index(r, 0)): [model.data(model.index(r, c))
                                            for c in range(model.columnCount())]
            for r in range(model.rowCount())}
    assert set(rows) == {"onnx", "torchscript"}
    assert rows["onnx"][1:3] == ["ok", "model.onnx"] and rows["onnx"][4].startswith("legacy")
    assert rows["torchscript"][1:3] == ["ok", "model.torchscript.pt"]
    assert rows["torchscript"][4] == "trace"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.torchscript.pt"]
    assert rows["onnx"][7] == "verified against the model"
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) == \
        status_color(panel.palette(), "pass")
    assert panel.parity_button.isEnabled()
    with qtbot.waitSignal(panel.artefacts_ready) as blocker:
        panel.parity_button.click()
    assert blocker.args[0] == [str(out / "model.onnx"), str(out / "model.torchscript.pt")]


@pytest.mark.parametrize(("source", "expected"), [
    ("no_such_package.models:build", "The module 'no_such_package.models' could not be found"),
    ("tests.fixtures.export_models:broken", "Building the model with"),
    ("model_without_callable.py", "Name the function or class to call"),
])
def test_a_bad_architecture_source_shows_the_plain_error(qtbot: QtBot, panel: ExportPanel,
                                                        tmp_path: Path, source: str,
                                                        expected: str) -> None:
    out = prepare(panel, tmp_path)
    panel.source.set_text(source)
    assert run(qtbot, panel, panel.export_button.click) == "error"
    assert panel.banner.isVisible() and panel.banner.message().startswith(expected)
    assert "Traceback" not in panel.banner.message()
    assert list(out.iterdir()) == [] and panel.results_model.rowCount() == 0


def test_weights_that_do_not_fit_stop_before_exporting(qtbot: QtBot, panel: ExportPanel,
                                                       tmp_path: Path) -> None:
    out = prepare(panel, tmp_path)
    panel.kwargs.setText('{"hidden": 32}')
    assert run(qtbot, panel, panel.export_button.click) == "error"
    assert panel.banner.message().startswith("The checkpoint's weights do not fit")
    assert panel.report_title.text().startswith("⚠ The weights do not fully fit")
    assert "size mismatch: fc1.weight" in panel.report_text.toPlainText()
    assert list(out.iterdir()) == []


def test_cancel_an_export_leaves_no_output(qtbot: QtBot, panel: ExportPanel,
                                           tmp_path: Path) -> None:
    out = prepare(panel, tmp_path)
    assert run(qtbot, panel, panel.load_button.click) == "done"
    panel.export_button.click()
    job = panel.bar.job
    assert job is not None
    with qtbot.waitSignal(panel.finished, timeout=30_000) as blocker:
        # cancel at once: waiting for a progress signal raced the worker on a loaded machine,
        # which could finish the first artefact before the GUI thread saw the signal
        panel.cancel()
    qtbot.waitUntil(lambda: not panel.bar.is_busy(), timeout=5_000)
    assert blocker.args == ["cancelled"]
    assert list(out.iterdir()) == []  # no artefact and no temp folder
    assert panel.results_model.rowCount() == 0 and not panel.parity_button.isEnabled()


def test_program_files_need_the_trust_box(qtbot: QtBot, panel: ExportPanel,
                                          files: FixtureFiles) -> None:
    panel.source.set_text(str(files["torchscript"]))
    assert run(qtbot, panel, panel.load_button.click) == "error"
    assert "Tick 'Trust this file'" in panel.banner.message()
    panel.trust.setChecked(True)
    assert run(qtbot, panel, panel.load_button.click) == "done", panel.banner.message()
    assert panel.loaded is not None and not panel.banner.isVisible()


def test_infer_from_model_fills_the_spec(qtbot: QtBot, panel: ExportPanel, tmp_path: Path) -> None:
    prepare(panel, tmp_path)
    panel.spec.set_text("")
    assert run(qtbot, panel, panel.infer_button.click) == "done"
    assert panel.spec.text() == "x: float32[batch(1..64), 8]"
    assert panel.spec.table.item(0, 2).text() == "batch(1..64)"


def test_spec_editor_table_and_text_stay_in_sync(panel: ExportPanel) -> None:
    editor = panel.spec
    editor.set_text("x: float32[batch(1..64), 3, 8, 8]; mask: bool[batch, 8]")
    assert editor.table.rowCount() == 2 and editor.table.item(0, 3).text() == "3"
    assert editor.table.columnCount() == 2 + 4 + 1  # name, dtype, 4 dims, one spare
    editor.table.item(0, 5).setText("16")  # an edit in a dim cell rewrites the text
    assert editor.text() == "x: float32[batch(1..64), 3, 8, 16]; mask: bool[batch(1..64), 8]"
    editor.table.setItem(1, 4, editor.table.item(1, 3).clone())
    editor.table.item(1, 4).setText("dim(2..4)")
    assert editor.text().endswith("mask: bool[batch(1..64), 8, dim(2..4)]")
    editor.set_text("x: float33[4]")
    assert editor.specs() is None and "did you mean float32" in editor.error()
    assert editor.error_label.isVisible()
    assert editor.table.item(0, 0).text() == "x"  # the table keeps the last valid spec
    editor.set_text("")
    assert editor.specs() == [] and editor.table.rowCount() == 0


def test_export_needs_a_target_and_a_folder(qtbot: QtBot, panel: ExportPanel,
                                            tmp_path: Path) -> None:
    prepare(panel, tmp_path)
    panel.onnx.setChecked(False)
    panel.torchscript.setChecked(False)
    assert run(qtbot, panel, lambda: qtbot.mouseClick(panel.export_button,
                                                      Qt.MouseButton.LeftButton)) == "error"
    assert panel.banner.message() == "Choose at least one export target."


def test_window_sends_export_artefacts_to_the_checks_panel(qtbot, files, tmp_path) -> None:
    from gui.app import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    view = window.open_path(files["state_dict"])
    qtbot.waitUntil(lambda: view.checkpoint is not None, timeout=10_000)
    export = window.open_panel("export")
    assert export is not None and export.weights.text() == str(files["state_dict"])
    a, b = str(tmp_path / "a.pt"), str(tmp_path / "b.onnx")
    export.artefacts_ready.emit([a, b])
    checks = window.open_panel("checks")
    assert checks is not None and window.tabs.currentWidget() is checks
    texts = [checks.reference.currentText(), checks.candidate.currentText()]
    assert texts == [a, b]
    window.close()

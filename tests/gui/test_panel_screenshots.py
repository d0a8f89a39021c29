"""Screenshots of the export wizard with results and the checks panel with a parity table and latency
plots, saved under the test's tmp_path and copied to the system temp folder
(/tmp/ckpt-studio-export.png, /tmp/ckpt-studio-checks.png) for people to look at."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from gui.views.checks import ChecksPanel
from gui.views.export import ExportPanel
from tests.fixtures.check_models import export_onnx, perturb_initializer, two_heads
from tests.fixtures.export_models import SPECS, batch_branch


def save(widget: QWidget, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "artifacts" / f"ckpt-studio-{name}.png"
    path.parent.mkdir(exist_ok=True)
    assert widget.grab().save(str(path))
    shutil.copy(path, Path(tempfile.gettempdir()) / path.name)
    return path


def show(qtbot: QtBot, widget: QWidget) -> None:
    qtbot.addWidget(widget)
    widget.resize(1280, 800)
    widget.show()


def test_export_panel_screenshot(qtbot: QtBot, tmp_path: Path) -> None:
    """A model whose forward branches on the batch size: the traced artefacts get warnings and
    torch.export refuses the dynamic batch, so every kind of row shows."""
    panel = ExportPanel()
    show(qtbot, panel)
    out = tmp_path / "exported"
    out.mkdir()
    weights = tmp_path / "batch_branch.safetensors"
    from safetensors.torch import save_file

    save_file(batch_branch().state_dict(), weights)
    panel.source.set_text("tests.fixtures.export_models:batch_branch")
    panel.set_checkpoint(str(weights))
    panel.out_dir.set_text(str(out))
    panel.spec.set_text(SPECS["batch_branch"])
    panel.onnx_exporter.setCurrentText("legacy")
    panel.pt2.setChecked(True)
    panel.int8.setChecked(True)
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        panel.export_button.click()
    qtbot.waitUntil(lambda: not panel.bar.is_busy())
    assert panel.results_model.rowCount() == 5
    panel.table.selectRow(0)
    qtbot.wait(50)
    assert save(panel, tmp_path, "export").stat().st_size > 10_000


def test_checks_panel_screenshot(qtbot: QtBot, tmp_path: Path) -> None:
    """Two heads; the candidate ONNX has one perturbed bias, so `aux` fails and `logits` passes."""
    model = two_heads()
    ts = tmp_path / "two_heads.torchscript.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(2, 3, 8, 8)), ts)
    good = export_onnx(model, tmp_path / "two_heads.onnx", ["logits", "aux"])
    bad = perturb_initializer(good, tmp_path / "two_heads_int8.onnx", "aux.bias", 1, 0.05)
    panel = ChecksPanel()
    show(qtbot, panel)
    panel.trust_prompt = lambda parent, paths: True
    panel.add_artefacts([str(ts), str(bad), str(good)])
    panel.spec.set_text("x: float32[batch(1..64), 3, 8, 8]")
    panel.atol.setText("1e-4")
    panel.runs.setValue(30)
    for button in (panel.parity_button, panel.latency_button):
        with qtbot.waitSignal(panel.finished, timeout=120_000) as blocker:
            button.click()
        assert blocker.args == ["done"], panel.banner.message()
        qtbot.waitUntil(lambda: not panel.bar.is_busy())
    passed, total = panel.table_model.counts()
    assert (passed, total) == (3, 6)
    qtbot.wait(50)
    assert save(panel, tmp_path, "checks").stat().st_size > 10_000

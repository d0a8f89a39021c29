"""The convert panel, driven like a user would: drop files on it, watch the outputs appear with their
verification; cancel and see nothing written; errors as a plain sentence."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot
from safetensors import safe_open

from core.convert import ConvertResult
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.progress import Progress
from gui.app import MainWindow
from gui.views.convert import ConvertPanel, Request, convert_request
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import shown, wait_done


def drop_on(widget: QWidget, paths: list[Path]) -> None:
    """A simulated drop of files (QDropEvent with file URLs) onto `widget`."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(20, 20), *args)  # Qt takes a QPoint here, a QPointF for the drop
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(QPointF(20, 20), *args))


@pytest.fixture()
def panel(qtbot: QtBot, tmp_path: Path) -> ConvertPanel:
    widget = shown(qtbot, ConvertPanel(), (1100, 700))
    (tmp_path / "out").mkdir()
    widget.out_dir.setText(str(tmp_path / "out"))
    return widget


def run_drop(qtbot: QtBot, panel: ConvertPanel, paths: list[Path], timeout: int = 30_000) -> None:
    with qtbot.waitSignal(panel.batch_finished, timeout=timeout):
        drop_on(panel, paths)
    qtbot.waitUntil(lambda: not panel.is_busy())


def visible_dialogs() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def test_drop_converts_and_shows_verification(qtbot: QtBot, panel: ConvertPanel, files: FixtureFiles,
                                              tmp_path: Path) -> None:
    run_drop(qtbot, panel, [files["training"]])
    out = tmp_path / "out" / "training.safetensors"
    assert out.exists()
    [result] = panel.results
    assert result.verification["passed"] and result.outputs[0]["path"] == str(out)
    assert result.dropped_sections == {"optimizer": 21}  # training state left out by default
    text = panel.log.toPlainText()
    assert "training.ckpt → training.safetensors" in text
    assert "Verified: re-read 10 tensors" in text and "passed" in text
    assert f"Source blake3: {result.source_hash['digest']}" in text
    assert "21 tensors of section 'optimizer' left out" in text
    assert not panel.error.isVisible() and not panel.errors


def test_options_reach_the_conversion(qtbot: QtBot, panel: ConvertPanel, files: FixtureFiles,
                                      tmp_path: Path) -> None:
    panel.dtype.setCurrentIndex(panel.dtype.findData("bf16"))
    panel.strip_prefix.setText("module.")
    panel.add_rename(r"^fc\.", "classifier.")
    panel.drop.setText("*.num_batches_tracked")
    panel.sha256.setChecked(True)
    run_drop(qtbot, panel, [files["data_parallel"]])
    [result] = panel.results
    with safe_open(result.outputs[0]["path"], "pt") as f:
        names = set(f.keys())
        dtype = f.get_tensor("classifier.weight").dtype
        record = json.loads(f.metadata()["checkpoint_studio"])
    expected = hashlib.sha256(files["data_parallel"].read_bytes()).hexdigest()
    assert result.source_hash == {"algorithm": "sha256", "digest": expected}
    assert record["source_sha256"] == expected
    assert "conv.weight" in names and "classifier.bias" in names
    assert not any(n.startswith("module.") or "num_batches" in n for n in names)
    assert str(dtype) == "torch.bfloat16"
    assert result.dropped == ["module.bn.num_batches_tracked"]
    assert "cast" in panel.log.toPlainText() and "renamed" in panel.log.toPlainText()


def test_batch_of_dropped_files_converts_one_after_another(qtbot: QtBot, panel: ConvertPanel,
                                                           files: FixtureFiles, tmp_path: Path) -> None:
    panel.target.setCurrentIndex(panel.target.findData("safetensors-sharded"))
    assert panel.shard_size.isEnabled()
    panel.shard_size.setText("600B")
    run_drop(qtbot, panel, [files["state_dict"], files["safetensors"], files["lightning"]])
    out = tmp_path / "out"
    assert [Path(r.source).name for r in panel.results] == ["state_dict.pt", "model.safetensors",
                                                            "lightning.ckpt"]
    for stem in ("state_dict", "model", "lightning"):
        assert (out / stem / "model.safetensors.index.json").exists()
        assert len(list((out / stem).glob("model-*-of-*.safetensors"))) >= 2
    assert panel.log.toPlainText().count("✔") == 3


def test_error_shows_the_plain_sentence(qtbot: QtBot, panel: ConvertPanel, files: FixtureFiles,
                                        tmp_path: Path) -> None:
    (tmp_path / "out" / "state_dict.safetensors").write_bytes(b"already here")
    run_drop(qtbot, panel, [files["state_dict"]])
    [(name, message, details)] = panel.errors
    assert name == "state_dict.pt" and "already exists" in message
    assert panel.error.isVisible() and panel.error.title.text() == message
    assert "Traceback" not in message + details
    assert (tmp_path / "out" / "state_dict.safetensors").read_bytes() == b"already here"
    assert not visible_dialogs()
    panel.overwrite.setChecked(True)  # allowed now: replaced by a verified file
    run_drop(qtbot, panel, [files["state_dict"]])
    assert len(panel.results) == 1 and not panel.error.isVisible()


def test_corrupt_source_shows_the_core_message(qtbot: QtBot, panel: ConvertPanel,
                                               tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04" + os.urandom(3000))
    with pytest.raises(CheckpointError) as expected:
        open_checkpoint(bad)
    run_drop(qtbot, panel, [bad])
    assert panel.error.title.text() == expected.value.message
    assert "broken.pt" in panel.log.toPlainText()
    assert list((tmp_path / "out").iterdir()) == []


class Slowed:
    """Forwards the core's progress, sleeping a little on each update so a cancel lands mid-write."""

    def __init__(self, inner: Progress | None) -> None:
        self.inner = inner

    def update(self, done: int, total: int, text: str = "") -> None:
        time.sleep(0.05)
        if self.inner is not None:
            self.inner.update(done, total, text)

    def cancelled(self) -> bool:
        return self.inner is not None and self.inner.cancelled()


def slow_convert(request: Request, progress: Progress | None = None) -> ConvertResult:
    return convert_request(request, progress=Slowed(progress))


def test_cancel_leaves_no_output(qtbot: QtBot, files: FixtureFiles, tmp_path: Path) -> None:
    panel = ConvertPanel(converter=slow_convert)
    qtbot.addWidget(panel)
    panel.show()
    out = tmp_path / "out"
    out.mkdir()
    panel.out_dir.setText(str(out))
    panel.target.setCurrentIndex(panel.target.findData("pt"))
    with qtbot.waitSignal(panel.batch_finished, timeout=30_000):
        drop_on(panel, [files["training"], files["state_dict"]])
        qtbot.waitUntil(lambda: panel.jobs.bar.value() > 0, timeout=10_000)
        assert "(1 of 2)" in panel.jobs.label.text()
        assert [p.name for p in out.iterdir() if p.name.endswith(".partial")]  # mid-write
        qtbot.mouseClick(panel.jobs.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_busy())
    assert panel.results == [] and panel.errors == []
    assert list(out.iterdir()) == []  # no output, no temp file
    assert "Cancelled: nothing was written for training.ckpt (1 more file(s) not started)" in \
        panel.log.toPlainText()
    assert not panel.jobs.isVisible() and panel.convert_button.isEnabled() is False  # no source


def test_convert_the_current_file_from_the_window(qtbot: QtBot, window: MainWindow,
                                                  files: FixtureFiles, tmp_path: Path) -> None:
    view = wait_done(qtbot, window.open_path(files["ema"]))
    window.convert_action.trigger()
    panel = window.tabs.currentWidget()
    assert isinstance(panel, ConvertPanel)
    assert panel.sources == [view.path] and panel.checkpoint is view.checkpoint
    sections = [panel.section.itemData(i) for i in range(panel.section.count())]
    assert sections == [None, "model", "ema"]
    panel.section.setCurrentIndex(2)
    panel.out_dir.setText(str(tmp_path))
    with qtbot.waitSignal(panel.batch_finished, timeout=30_000):
        qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_busy())
    [result] = panel.results
    assert (tmp_path / "ema.safetensors").exists()
    assert "section=ema" in result.metadata["checkpoint_studio"]
    assert window.windowTitle().startswith("Convert")


def test_tools_menu_mounts_the_other_panels(qtbot: QtBot, window: MainWindow) -> None:
    """Export and Checks (written separately) open as tabs when their modules exist."""
    for key, action in window.panel_actions.items():
        action.trigger()
        widget = window.tabs.currentWidget()
        assert type(widget).__name__ == {"export": "ExportPanel", "checks": "ChecksPanel"}[key]
        action.trigger()  # a second time: the same tab
        assert window.tabs.currentWidget() is widget
    assert window.tabs.count() == len(window.panel_actions)
    for _ in range(window.tabs.count()):
        window.close_tab(0)

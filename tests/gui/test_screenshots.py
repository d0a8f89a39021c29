"""Screenshots of the window with real content, saved for people to look at.

Written under the test's tmp_path; a copy of each also goes to the system temp folder
(/tmp/ckpt-studio-*.png) so a reviewer can open them after the run.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pytestqt.qtbot import QtBot

from gui.app import MainWindow
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import wait_done


def save(window: MainWindow, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "artifacts" / f"ckpt-studio-{name}.png"
    path.parent.mkdir(exist_ok=True)
    assert window.grab().save(str(path))
    shutil.copy(path, Path(tempfile.gettempdir()) / path.name)
    return path


def test_inspect_screenshots(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                             tmp_path: Path) -> None:
    view = wait_done(qtbot, window.open_path(files["training"]))
    assert view.state == "ready"
    model = view.tensors.table_model
    row = next(r for r in range(model.rowCount()) if model.tensor(r).name == "conv.weight")
    with qtbot.waitSignal(view.detail.stats_ready, timeout=20_000):
        view.tensors.table.selectRow(row)
    qtbot.wait(50)
    inspect = save(window, tmp_path, "inspect")
    view.tensors.tabs.setCurrentWidget(view.tensors.tree)
    view.sections.select("training")
    view.sections.select("model")
    qtbot.wait(50)
    modules = save(window, tmp_path, "modules")
    assert inspect.stat().st_size > 10_000 and modules.stat().st_size > 10_000


def test_empty_window_screenshot(window: MainWindow, tmp_path: Path) -> None:
    assert save(window, tmp_path, "empty").exists()


def test_error_screenshot(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    view = wait_done(qtbot, window.open_path(bad))
    assert view.state == "error"
    view.message.details.toggle.click()
    assert save(window, tmp_path, "error").exists()


def test_convert_screenshot(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                            tmp_path: Path) -> None:
    from gui.views.convert import ConvertPanel

    wait_done(qtbot, window.open_path(files["data_parallel"]))
    panel = window.open_convert()
    assert isinstance(panel, ConvertPanel)
    (tmp_path / "converted").mkdir()
    panel.out_dir.setText(str(tmp_path / "converted"))
    panel.dtype.setCurrentIndex(panel.dtype.findData("bf16"))
    panel.strip_prefix.setText("module.")
    panel.add_rename(r"^fc\.", "classifier.")
    panel.drop.setText("*.num_batches_tracked")
    with qtbot.waitSignal(panel.batch_finished, timeout=30_000):
        panel.convert_files([str(files["data_parallel"]), str(files["training"])])
    qtbot.waitUntil(lambda: not panel.is_busy())
    assert len(panel.results) == 2
    qtbot.wait(50)
    assert save(window, tmp_path, "convert").stat().st_size > 10_000


def test_diff_screenshot(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                         tmp_path: Path) -> None:
    import torch

    state = torch.load(files["state_dict"], weights_only=True)
    state = {k.replace("fc.", "classifier."): v.clone() for k, v in state.items()}
    state["classifier.weight"] += 0.01
    state["conv.bias"] += 1e-7
    state["conv.weight"][0] += 0.05
    state["bn.running_var"] = state["bn.running_var"].half()
    state["head.weight"] = torch.zeros(12, 8)
    state["extra.scale"] = torch.ones(3)
    torch.save(state, tmp_path / "finetuned.pt")
    view = window.open_diff(files["state_dict"], tmp_path / "finetuned.pt")
    qtbot.waitUntil(lambda: view.state == "ready" and not view.is_busy(), timeout=20_000)
    with qtbot.waitSignal(view.values_compared, timeout=30_000):
        view.compare_values()
    qtbot.waitUntil(lambda: not view.is_busy())
    qtbot.wait(50)
    assert view.suggestions.tree.topLevelItemCount() >= 1
    assert save(window, tmp_path, "diff").stat().st_size > 10_000

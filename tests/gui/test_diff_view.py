"""The diff view, driven like a user would: drop two files, read the colours and counts, filter,
compare values, apply a remap suggestion and see the re-diff."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, SHAPE, DiffResult, diff_keys
from core.diff.values import DIFFERENT, IDENTICAL
from core.model import Checkpoint, Section, TensorInfo
from gui.app import MainWindow
from gui.models import diff_table
from gui.models.diff_table import STATUS_RGB, DiffTableModel, tint
from gui.views.diff import DiffView, Opened
from tests.fixtures.models import FixtureFiles
from tests.gui.test_inspect_view import drop
from tests.gui.test_models import BIG, synthetic


def wait_diff(qtbot: QtBot, view: DiffView, timeout: int = 20_000) -> DiffView:
    qtbot.waitUntil(lambda: view.state in ("ready", "error", "cancelled") and not view.is_busy(),
                    timeout=timeout)
    return view


def open_diff(qtbot: QtBot, window: MainWindow, a: Path, b: Path) -> DiffView:
    view = window.open_diff(a, b)
    return wait_diff(qtbot, view)


def rows(view: DiffView) -> dict[str, str]:
    """Shown rows: name -> status."""
    model = view.model
    return {model.key(r).name: model.key(r).status for r in range(model.rowCount())}


def test_drop_two_files_opens_the_diff(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    drop(window, [files["state_dict"], files["data_parallel"]])
    [view] = window.tab_widgets()
    assert isinstance(view, DiffView)
    wait_diff(qtbot, view)
    assert view.state == "ready", view.message.message.text()
    counts = view.opened.result.totals
    assert counts == {ONLY_A: 11, ONLY_B: 11, SHAPE: 0, DTYPE: 0, SAME: 0}
    texts = {s: b.text() for s, b in view.status_buttons.items()}
    assert texts[ONLY_A] == "Only in A  11" and texts[ONLY_B] == "Only in B  11"
    assert texts[SAME] == "Equal  0"
    assert view.model.rowCount() == 22
    assert "state_dict.pt" in view.side_a.text() and "dp.pth" in view.side_b.text()
    assert "torch-zip" in view.side_a.text()
    assert window.windowTitle().startswith("state_dict.pt ⟷ dp.pth")
    assert window.open_diff(files["state_dict"], files["data_parallel"]) is view  # already open


def test_rows_are_coloured_by_status(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    model = view.model
    colours = {}
    for row in range(model.rowCount()):
        key = model.key(row)
        colours[key.status] = model.index(row, diff_table.NAME).data(Qt.ItemDataRole.BackgroundRole)
    assert colours[ONLY_A] == tint(STATUS_RGB[ONLY_A]) and colours[ONLY_B] == tint(STATUS_RGB[ONLY_B])
    assert colours[ONLY_A] != colours[ONLY_B]
    base = QApplication.palette().color(QPalette.ColorRole.Base)
    assert colours[ONLY_A] != base
    first = model.index(0, diff_table.STATUS).data()
    assert first == "Only in A"
    assert not view.status_buttons[ONLY_A].icon().isNull()  # the legend swatch


def test_filter_by_status_and_name(qtbot: QtBot, window: MainWindow, files: FixtureFiles) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    view.status_buttons[ONLY_B].click()
    assert set(rows(view).values()) == {ONLY_A} and len(rows(view)) == 11
    assert view.count.text() == "11 of 22 keys"
    qtbot.keyClicks(view.filter, "bn.*")
    qtbot.waitUntil(lambda: len(rows(view)) == 5)
    assert all(name.startswith("bn.") for name in rows(view))
    view.status_buttons[ONLY_B].click()
    view.filter.setText("*.bn.running_*")  # as `inspect --filter`: '*.' also matches at the start
    qtbot.waitUntil(lambda: len(rows(view)) == 4)
    assert set(rows(view)) == {"bn.running_mean", "bn.running_var", "module.bn.running_mean",
                               "module.bn.running_var"}
    view.filter.setText("module.bn.running_*")
    qtbot.waitUntil(lambda: len(rows(view)) == 2)
    assert set(rows(view)) == {"module.bn.running_mean", "module.bn.running_var"}


def test_suggestion_applied_gives_an_equal_rediff(qtbot: QtBot, window: MainWindow,
                                                   files: FixtureFiles, tmp_path: Path) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    tree = view.suggestions.tree
    assert tree.topLevelItemCount() == 1
    item = tree.topLevelItem(0)
    assert item.text(0) == "add the prefix 'module.'" and item.text(1) == "11"
    assert item.text(2) == "" and item.checkState(0) == Qt.CheckState.Checked  # not ambiguous
    assert "embed.weight  →  module.embed.weight" in item.toolTip(0)
    assert view.suggestions.apply_button.isEnabled()
    out = tmp_path / "renamed.safetensors"
    with qtbot.waitSignal(view.applied, timeout=20_000):
        view.apply_and_save(str(out))
    wait_diff(qtbot, view)
    assert out.exists()
    result = view.opened.result
    assert bool(result) and result.totals[SAME] == 11 == sum(result.totals.values())
    assert view.status_buttons[SAME].text() == "Equal  11"
    assert set(rows(view).values()) == {SAME}
    assert view.path_a == str(out) and "renamed.safetensors" in view.side_a.text()
    assert view.notice.isVisible() and "passed" in view.notice.text()
    assert "nothing to rename" in view.suggestions.empty.text()
    assert not view.suggestions.apply_button.isEnabled()
    assert window.tabs.tabText(0) == "renamed.safetensors ⟷ dp.pth"


def test_saving_over_the_source_is_refused_plainly(qtbot: QtBot, window: MainWindow,
                                                    files: FixtureFiles, tmp_path: Path) -> None:
    a = tmp_path / "a.pt"
    a.write_bytes(files["state_dict"].read_bytes())
    view = open_diff(qtbot, window, a, files["data_parallel"])
    with qtbot.waitSignal(view.failed, timeout=20_000) as blocker:
        view.apply_and_save(str(a))
    wait_diff(qtbot, view)
    [message] = blocker.args
    assert view.error.isVisible() and view.error.title.text() == message
    assert "Traceback" not in message and "a.pt" in message
    assert a.read_bytes() == files["state_dict"].read_bytes()
    assert view.opened.result.totals[ONLY_A] == 11  # still the first diff
    view.apply_and_save(str(files["data_parallel"]))  # file B: refused before any job
    assert not view.is_busy() and "file B" in view.error.title.text()


def test_unchecked_suggestion_is_not_applied(qtbot: QtBot, window: MainWindow,
                                             files: FixtureFiles) -> None:
    view = open_diff(qtbot, window, files["state_dict"], files["data_parallel"])
    view.suggestions.tree.topLevelItem(0).setCheckState(0, Qt.CheckState.Unchecked)
    assert view.suggestions.checked_rules() == []
    assert not view.suggestions.apply_button.isEnabled()


def perturbed(files: FixtureFiles, tmp_path: Path) -> Path:
    state = torch.load(files["state_dict"], weights_only=True)
    state["fc.weight"] = state["fc.weight"] + 0.5
    path = tmp_path / "perturbed.pt"
    torch.save(state, path)
    return path


def test_compare_values_marks_the_perturbed_tensor(qtbot: QtBot, window: MainWindow,
                                                   files: FixtureFiles, tmp_path: Path) -> None:
    view = open_diff(qtbot, window, files["state_dict"], perturbed(files, tmp_path))
    assert view.model.columnCount() == len(diff_table.BASE_COLUMNS)
    assert all(not b.isVisible() for b in view.value_buttons.values())
    with qtbot.waitSignal(view.values_compared, timeout=30_000):
        qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    wait_diff(qtbot, view)
    model = view.model
    assert model.columnCount() == len(diff_table.BASE_COLUMNS) + len(diff_table.VALUE_COLUMNS)
    shown = {model.key(r).name: model.index(r, diff_table.VALUES).data() for r in range(model.rowCount())}
    assert shown["fc.weight"] == "Different"
    assert {v for k, v in shown.items() if k != "fc.weight"} == {"Identical"}
    row = next(r for r in range(model.rowCount()) if model.key(r).name == "fc.weight")
    assert float(model.index(row, diff_table.MAX_ABS).data()) == pytest.approx(0.5)
    assert model.index(row, diff_table.VALUES).data(Qt.ItemDataRole.BackgroundRole) != \
        model.index(0, diff_table.VALUES).data(Qt.ItemDataRole.BackgroundRole)
    assert view.value_buttons[DIFFERENT].isVisible()
    assert view.value_buttons[DIFFERENT].text() == "Different  1"
    view.value_buttons[IDENTICAL].click()
    assert list(rows(view)) == ["fc.weight"]
    assert "1 different" in view.summary.text()


def test_cancelled_value_compare_keeps_the_key_diff(qtbot: QtBot, window: MainWindow,
                                                    files: FixtureFiles, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from core.progress import Progress, step
    from gui.views import diff

    def slow(opened: Opened, progress: Progress | None = None) -> Opened:
        for i in range(2000):
            step(progress, i, 2000, "reading")
            time.sleep(0.005)
        raise AssertionError("not cancelled")

    view = open_diff(qtbot, window, files["state_dict"], perturbed(files, tmp_path))
    monkeypatch.setattr(diff, "values_diff", slow)
    view.compare_values()
    qtbot.waitUntil(lambda: view.jobs.bar.value() > 0)
    assert not view.compare_button.isEnabled()
    view.jobs.cancel_button.click()
    wait_diff(qtbot, view)
    assert "cancelled" in view.notice.text()
    assert view.model.columnCount() == len(diff_table.BASE_COLUMNS)
    assert view.compare_button.isEnabled()


def test_unreadable_file_shows_a_plain_error(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                                             tmp_path: Path) -> None:
    bad = tmp_path / "noise.bin"
    bad.write_bytes(os.urandom(4000))
    view = open_diff(qtbot, window, files["state_dict"], bad)
    assert view.state == "error"
    text = view.message.message.text()
    assert text.startswith("File B ('noise.bin'):") and "Traceback" not in text
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def big_result() -> DiffResult:
    """200k keys vs a copy with a few removed, renamed, reshaped and recast."""
    from core.diff.structure import SectionDiff

    a = {t.name: t for t in synthetic(BIG)}
    b = dict(a)
    for i, name in enumerate(list(a)[::1000]):
        t = b.pop(name)
        if i % 4 == 1:
            b["renamed." + name] = t
        elif i % 4 == 2:
            b[name] = TensorInfo(name, (t.shape[0] + 1, 8), t.dtype)
        elif i % 4 == 3:
            b[name] = TensorInfo(name, t.shape, "bfloat16")
    keys, _pairs = diff_keys(a, b)
    return DiffResult("a.pt", "b.pt", "synthetic", "synthetic", [SectionDiff("model", "model", keys)])


def test_200k_keys_stay_smooth(qtbot: QtBot) -> None:
    result = big_result()
    model = DiffTableModel()
    start = time.perf_counter()
    model.set_result(result)
    model.set_filter({ONLY_A, ONLY_B, SHAPE, DTYPE}, None, "")
    differing = model.rowCount()
    model.set_filter(None, None, "layers.19?.block1.*")
    model.sort(diff_table.NAME, Qt.SortOrder.DescendingOrder)
    elapsed = time.perf_counter() - start
    assert differing == sum(1 for k in result.sections[0].keys if k.status != SAME) == 250
    assert model.rowCount() == 10 * 50
    assert elapsed < 15, elapsed  # a guard against quadratic regressions (~1.5 s when idle), not a target

    section = Section("model", {})
    a = Checkpoint(Path("a.pt"), "synthetic", {"model": section}, weights="model")
    opened = Opened(a, a, result, 1, 1)
    view = DiffView("a.pt", "b.pt", differ=lambda _a, _b: opened)
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    start = time.perf_counter()
    wait_diff(qtbot, view)
    view.status_buttons[SAME].click()
    shown = time.perf_counter() - start
    assert view.model.rowCount() == 250 and view.count.text() == "250 of 200,050 keys"
    assert shown < 5, shown


def test_file_compare_asks_for_a_then_b(qtbot: QtBot, window: MainWindow, files: FixtureFiles,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *_a, **_k: ([str(files["safetensors"])], "")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *_a, **_k: (str(files["state_dict"]), "")))
    window.compare_action.trigger()
    [view] = window.tab_widgets()
    assert isinstance(view, DiffView)
    wait_diff(qtbot, view)
    assert view.state == "ready"
    assert (Path(view.path_a).name, Path(view.path_b).name) == ("model.safetensors", "state_dict.pt")
    assert view.opened.result.totals[ONLY_B] == 1  # head.weight: tied, not stored in the safetensors

"""The checks panel's "Save failing cases to:" folder (the CLI's `check parity --save-dir`): failing
cases land there as .npz files, the status says where, and those files picked under "Input files"
test exactly those cases again. Driven through the real widgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from gui.models.parity_table import COLUMNS
from gui.views.checks import ChecksPanel
from tests.fixtures.check_models import export_onnx, perturb_initializer, two_heads
from tests.gui.conftest import shown
from tests.gui.test_checks_panel import run

MAX_ABS = COLUMNS.index("Max abs")


@pytest.fixture()
def panel(qtbot: QtBot) -> ChecksPanel:
    return shown(qtbot, ChecksPanel())


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TwoHeads as ONNX; `off`: its aux bias off by 0.01 (every input fails); `conv`: a conv weight
    off by 0.5 (an all-zero input still passes: the conv then gives its bias alone)."""
    root = tmp_path_factory.mktemp("save_cases")
    good = export_onnx(two_heads(), root / "heads.onnx", ["logits", "aux"])
    return {"good": good, "off": perturb_initializer(good, root / "off.onnx", "aux.bias", 0, 0.01),
            "conv": perturb_initializer(good, root / "conv.onnx", "conv.weight", 0, 0.5)}


def table(panel: ChecksPanel) -> list[tuple[str, ...]]:
    """Shown rows: (input shape, output, result, max abs)."""
    m = panel.table_model
    return [tuple(m.data(m.index(r, c)) for c in (0, 1, 2, MAX_ABS)) for r in range(m.rowCount())]


def click_parity(qtbot: QtBot, panel: ChecksPanel) -> str:
    return run(qtbot, panel, lambda: qtbot.mouseClick(panel.parity_button, Qt.MouseButton.LeftButton))


def test_failing_cases_are_saved_and_picked_again(qtbot: QtBot, panel: ChecksPanel,
                                                  heads: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "failures" / "run1"  # created by the run
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.shapes.setText("batch=1; batch=3")
    qtbot.keyClicks(panel.save_dir.edit, str(folder))
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    first = table(panel)
    assert [row[:3] for row in first] == [
        ("x [1, 3, 8, 8]", "logits", "pass"), ("x [1, 3, 8, 8]", "aux", "FAIL"),
        ("x [3, 3, 8, 8]", "logits", "pass"), ("x [3, 3, 8, 8]", "aux", "FAIL")]
    assert panel.status.text() == f"Parity: 2 of 4 cases fail. 2 failing cases saved to {folder}."
    saved = sorted(folder.glob("*.npz"))
    assert len(saved) == 2 and not list(folder.glob("*.partial"))
    with np.load(saved[1], allow_pickle=False) as data:
        assert data["input.x"].shape == (3, 3, 8, 8)
        assert {"reference.aux", "candidate.aux", "meta"} <= set(data.files)
    m = panel.table_model
    assert str(folder) in m.data(m.index(1, 0), Qt.ItemDataRole.ToolTipRole)  # the FAIL row
    assert panel.retest.isVisible()

    from PySide6.QtWidgets import QFileDialog  # pick the saved files under "Input files"

    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *_a, **_k: ([str(p) for p in saved], "")))
    qtbot.mouseClick(panel.npz.browse, Qt.MouseButton.LeftButton)
    assert panel.npz.paths() == [str(p) for p in saved] and not panel.shapes.isEnabled()
    panel.save_dir.edit.clear()  # nothing saved this time
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert table(panel) == first  # the same inputs: the same differences, to the last digit
    assert panel.parity.settings["inputs"] == "from .npz files"
    assert panel.status.text() == "Parity: 2 of 4 cases fail."
    assert not panel.retest.isVisible()


def test_only_the_failing_cases_are_saved_and_retested(qtbot: QtBot, panel: ChecksPanel,
                                                       heads: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    zeros, random = tmp_path / "zeros.npz", tmp_path / "random.npz"
    np.savez(zeros, x=np.zeros((4, 3, 8, 8), np.float32))
    np.savez(random, x=noise)
    folder = tmp_path / "failing"
    panel.set_artefacts(str(heads["good"]), str(heads["conv"]))
    panel.npz.set_text(f"{zeros}; {random}")
    panel.save_dir.set_text(str(folder))
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert [row[:3] for row in table(panel)] == [
        ("x [4, 3, 8, 8]", "logits", "pass"), ("x [4, 3, 8, 8]", "aux", "pass"),
        ("x [2, 3, 8, 8]", "logits", "FAIL"), ("x [2, 3, 8, 8]", "aux", "FAIL")]
    assert panel.status.text() == f"Parity: 2 of 4 cases fail. 1 failing case saved to {folder}."
    [saved] = folder.glob("*.npz")
    with np.load(saved, allow_pickle=False) as data:
        assert np.array_equal(data["input.x"], noise)  # the failing input, exactly

    qtbot.mouseClick(panel.retest, Qt.MouseButton.LeftButton)  # "Test the saved cases again"
    assert panel.npz.paths() == [str(saved)]
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert [row[:3] for row in table(panel)] == [("x [2, 3, 8, 8]", "logits", "FAIL"),
                                                 ("x [2, 3, 8, 8]", "aux", "FAIL")]
    assert panel.summary.text() == "✗  0 of 2 cases pass"
    assert panel.status.text() == f"Parity: 2 of 2 cases fail. 1 failing case saved to {folder}."
    [again] = panel.parity.cases  # the re-run's failing case is saved too (its own number)
    with np.load(again.saved, allow_pickle=False) as data:
        assert np.array_equal(data["input.x"], noise)


def test_a_passing_run_saves_nothing(qtbot: QtBot, panel: ChecksPanel, heads: dict[str, Path],
                                     tmp_path: Path) -> None:
    folder = tmp_path / "unused"
    panel.set_artefacts(str(heads["good"]), str(heads["good"]))
    panel.shapes.setText("batch=2")
    panel.save_dir.set_text(str(folder))
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert panel.status.text() == "Parity: all outputs match."
    assert not folder.exists() and not panel.retest.isVisible()


def test_a_file_as_the_folder_is_refused_before_running(qtbot: QtBot, panel: ChecksPanel,
                                                        heads: dict[str, Path], tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder")
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.save_dir.set_text(str(taken))
    assert click_parity(qtbot, panel) == "error"
    assert panel.banner.message() == (f"'{taken}' is a file, not a folder; choose a folder to save "
                                      "the failing cases in.")
    assert panel.parity is None and taken.read_text() == "not a folder"


def test_a_folder_that_cannot_be_created_keeps_the_results(qtbot: QtBot, panel: ChecksPanel,
                                                            heads: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """Saving is a by-product: when it fails, the comparison is still shown, with a note saying
    why nothing was saved."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would go")
    folder = blocker / "cases"
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.shapes.setText("batch=2")
    panel.save_dir.set_text(str(folder))
    assert click_parity(qtbot, panel) == "done"
    assert panel.parity is not None and not panel.parity.passed
    assert "FAIL" in {row[2] for row in table(panel)}
    note = f"The failing cases could not be saved in '{folder}' (Not a directory)."
    assert panel.notes.isVisible() and note in panel.notes.text()
    assert "saved to" not in panel.status.text()
    assert blocker.read_text() == "a file where a folder would go"
    assert not list(tmp_path.glob("**/*.partial"))


def test_the_folder_browse_picks_a_folder(panel: ChecksPanel, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *_a, **_k: str(tmp_path)))
    panel.save_dir.browse.click()
    assert panel.save_dir.text() == str(tmp_path)
    assert panel.save_dir.folder() == str(tmp_path)

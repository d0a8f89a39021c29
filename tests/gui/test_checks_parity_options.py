"""The checks panel's per-output tolerances (the CLI's --tol) and .npz input files (--inputs-npz),
driven through the real widgets: type the text, click Run parity, read the table and the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from gui.models.parity_table import COLUMNS
from gui.views.checks import ChecksPanel
from gui.views.parity_inputs import parse_tolerances
from tests.fixtures.check_models import export_onnx, perturb_initializer, two_heads
from tests.fixtures.export_models import two_input
from tests.gui.conftest import shown
from tests.gui.test_checks_panel import run

TOL = COLUMNS.index("atol / rtol")


@pytest.fixture()
def panel(qtbot: QtBot) -> ChecksPanel:
    return shown(qtbot, ChecksPanel())


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TwoHeads as ONNX (outputs `logits` and `aux`), and a copy whose aux head is off by 0.01."""
    root = tmp_path_factory.mktemp("heads")
    good = export_onnx(two_heads(), root / "heads.onnx", ["logits", "aux"])
    return {"good": good, "off": perturb_initializer(good, root / "off.onnx", "aux.bias", 0, 0.01)}


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model taking `x` [B, 6] and `mask` [B, 6] as ONNX."""
    path = tmp_path_factory.mktemp("two_input") / "two_input.onnx"
    torch.onnx.export(two_input(), (torch.randn(2, 6), torch.ones(2, 6, dtype=torch.bool)), path,
                      dynamo=False, input_names=["x", "mask"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "mask": {0: "batch"}, "y": {0: "batch"}})
    return path


def table(panel: ChecksPanel) -> list[tuple[str, str, str, str]]:
    """Shown rows: (input shape, output, result, atol / rtol)."""
    m = panel.table_model
    return [tuple(m.data(m.index(r, c)) for c in (0, 1, 2, TOL)) for r in range(m.rowCount())]


def click_parity(qtbot: QtBot, panel: ChecksPanel) -> str:
    return run(qtbot, panel, lambda: qtbot.mouseClick(panel.parity_button, Qt.MouseButton.LeftButton))


def test_per_output_tolerance_passes_only_that_output(qtbot: QtBot, panel: ChecksPanel,
                                                      heads: dict[str, Path]) -> None:
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.shapes.setText("batch=2")
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert table(panel) == [("x [2, 3, 8, 8]", "logits", "pass", "0.0001 / 0.0001"),
                            ("x [2, 3, 8, 8]", "aux", "FAIL", "0.0001 / 0.0001")]
    assert panel.summary.text() == "✗  1 of 2 cases pass"

    qtbot.keyClicks(panel.tolerances, "aux=0.05,0")
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert table(panel) == [("x [2, 3, 8, 8]", "logits", "pass", "0.0001 / 0.0001"),
                            ("x [2, 3, 8, 8]", "aux", "pass", "0.05 / 0")]
    assert panel.summary.text() == "✓  2 of 2 cases pass"
    assert panel.parity.settings["tolerances"] == {"aux": (0.05, 0.0)}
    assert not panel.notes.isVisible()

    panel.tolerances.setText("aux=0.05,0; logits=0.5,0.5")  # several, ';' between them
    assert click_parity(qtbot, panel) == "done"
    assert [row[3] for row in table(panel)] == ["0.5 / 0.5", "0.05 / 0"]


def test_a_misspelt_output_name_is_noted(qtbot: QtBot, panel: ChecksPanel,
                                         heads: dict[str, Path]) -> None:
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.shapes.setText("batch=2")
    panel.tolerances.setText("axu=0.05,0")
    assert click_parity(qtbot, panel) == "done"
    assert [row[2] for row in table(panel)] == ["pass", "FAIL"]
    assert panel.notes.isVisible()
    assert panel.notes.text() == ("No output is named 'axu', so that tolerance was not used "
                                  "(the outputs are logits, aux).")


@pytest.mark.parametrize("text", ["aux=big", "aux=0.1", "aux"])
def test_an_invalid_tolerance_is_a_plain_error(qtbot: QtBot, panel: ChecksPanel,
                                               heads: dict[str, Path], text: str) -> None:
    panel.set_artefacts(str(heads["good"]), str(heads["off"]))
    panel.tolerances.setText(f"logits=1e-3,1e-3; {text}")
    assert click_parity(qtbot, panel) == "error"
    assert panel.banner.message() == f"'{text}' is not a tolerance; write it like 'logits=1e-3,1e-3'."
    assert panel.parity is None and panel.table_model.rowCount() == 0


def test_the_gui_parses_tolerances_like_the_cli() -> None:
    from core.checks.parity import parse_tolerances as cli_parse
    from core.cli.main import build_parser

    args = build_parser().parse_args(["check", "parity", "a.onnx", "b.onnx", "--tol", "logits=1e-3,0",
                                      "--tol", "aux=0.5,0.25"])
    assert parse_tolerances("logits=1e-3,0; aux=0.5,0.25") == cli_parse(args.tol) == \
        {"logits": (1e-3, 0.0), "aux": (0.5, 0.25)}
    assert parse_tolerances("") == {}


def test_npz_files_replace_the_generated_inputs(qtbot: QtBot, panel: ChecksPanel,
                                                heads: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    plain, saved = tmp_path / "plain.npz", tmp_path / "saved_case.npz"
    np.savez(plain, x=rng.standard_normal((3, 3, 8, 8), dtype=np.float32))
    np.savez(saved, **{"input.x": rng.standard_normal((5, 3, 8, 8), dtype=np.float32),
                       "reference.logits": np.zeros((5, 5), np.float32)})  # as a saved failing case
    panel.set_artefacts(str(heads["good"]), str(heads["good"]))
    panel.shapes.setText("batch=oops")  # not used with .npz inputs, so not an error
    panel.npz.edit.setText(f"{plain}; {saved}")
    assert not panel.shapes.isEnabled()
    assert click_parity(qtbot, panel) == "done", panel.banner.message()
    assert [row[:3] for row in table(panel)] == [
        ("x [3, 3, 8, 8]", "logits", "pass"), ("x [3, 3, 8, 8]", "aux", "pass"),
        ("x [5, 3, 8, 8]", "logits", "pass"), ("x [5, 3, 8, 8]", "aux", "pass")]
    assert panel.summary.text() == "✓  4 of 4 cases pass"
    assert panel.parity.settings["inputs"] == "from .npz files"
    panel.npz.edit.clear()
    assert panel.shapes.isEnabled()


def test_npz_browse_takes_several_files(panel: ChecksPanel, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    chosen = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", staticmethod(lambda *_a, **_k: (chosen, "")))
    panel.npz.browse.click()
    assert panel.npz.paths() == chosen


def test_an_npz_missing_an_input_is_a_plain_error(qtbot: QtBot, panel: ChecksPanel,
                                                  two_inputs: Path, tmp_path: Path) -> None:
    only_x = tmp_path / "only_x.npz"
    np.savez(only_x, x=np.ones((2, 6), np.float32))
    panel.set_artefacts(str(two_inputs), str(two_inputs))
    panel.npz.edit.setText(str(only_x))
    assert click_parity(qtbot, panel) == "error"
    message = panel.banner.message()
    assert message == ("The inputs give 1 tensors (x) but the model run by onnxruntime "
                       "(two_input.onnx) takes 2 (x, mask).")
    assert "Traceback" not in message and panel.parity is None


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("gone.npz", None, "The input file '{path}' does not exist."),
    ("text.npz", b"not an archive", "'text.npz' is not a readable .npz file of input arrays."),
])
def test_an_unreadable_npz_is_a_plain_error(qtbot: QtBot, panel: ChecksPanel,
                                            heads: dict[str, Path], tmp_path: Path, name: str,
                                            content: bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    panel.set_artefacts(str(heads["good"]), str(heads["good"]))
    panel.npz.edit.setText(str(path))
    assert click_parity(qtbot, panel) == "error"
    assert panel.banner.message() == expected.format(path=path)
    assert "Traceback" not in panel.banner.message()

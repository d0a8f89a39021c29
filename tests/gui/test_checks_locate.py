""""Find where it diverges" in the checks panel: a BERT folder against its ONNX export with one
layer's weight scaled; after the failed parity run the button locates that layer's module, says so
in plain words and draws the depth plot; a cancel stops it; a passing run leaves it disabled."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

from gui.views.checks import ChecksPanel  # noqa: E402
from tests.fixtures.hf_folders import bert_with_onnx  # noqa: E402
from tests.gui.conftest import screenshot, shown  # noqa: E402
from tests.gui.test_checks_panel import run  # noqa: E402

DAMAGED = "encoder.layer.1.intermediate.dense"  # the module whose weight is scaled


@pytest.fixture()
def panel(qtbot: QtBot) -> ChecksPanel:
    return shown(qtbot, ChecksPanel(), (1280, 900))


def scale_weight_of(src: Path, dst: Path, node_path: str, factor: float) -> str:
    """Copy `src` with the weight initializer feeding the node whose name contains `node_path`
    multiplied by `factor`; the initializer's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    names = {i.name for i in model.graph.initializer}
    [weight] = {i for n in model.graph.node if node_path in n.name and n.op_type == "MatMul"
                for i in n.input if i in names}
    init = next(i for i in model.graph.initializer if i.name == weight)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, weight))
    onnx.save(model, dst)
    return weight


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("locate")
    files = bert_with_onnx(root)
    scale_weight_of(files["onnx"], root / "damaged.onnx", "/layer.1/intermediate/dense/", 3.0)
    return {**files, "damaged": root / "damaged.onnx"}


def failed_parity(qtbot: QtBot, panel: ChecksPanel, bert: dict[str, Path]) -> None:
    panel.add_artefacts([str(bert["folder"]), str(bert["damaged"])])
    panel.shapes.setText("batch=2, sequence=8")
    assert not panel.locate_box.button.isEnabled()
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done", panel.banner.message()
    assert panel.parity is not None and not panel.parity.passed
    assert panel.parity_box.reason.text() == panel.parity.reason()
    assert panel.parity_box.reason.text().startswith("FAIL under the ")


def test_locate_names_the_damaged_module(qtbot: QtBot, panel: ChecksPanel,
                                         bert: dict[str, Path], tmp_path: Path) -> None:
    failed_parity(qtbot, panel, bert)
    assert panel.locate_box.button.isEnabled() and not panel.locate_box.isVisible()
    assert run(qtbot, panel, lambda: qtbot.mouseClick(panel.locate_box.button,
                                                      Qt.MouseButton.LeftButton), 120_000) == "done", \
        panel.banner.message()
    loc = panel.locate_box.result
    assert loc is not None and loc.first_divergence is not None
    first = loc.first_divergence
    assert first.module.endswith(DAMAGED), first.module
    assert all(not r.exceeds for r in loc.rows if r.depth < first.depth)
    assert loc.input_shapes["input_ids"] == [2, 8]  # the failing case parity ran
    words = panel.locate_box.summary.text()
    assert f"First divergence: {first.module}</b>" in words
    assert f"the {first.depth - 1} modules before it agree" in words
    assert panel.status.text() == f"Located: the first module out of tolerance is {first.module}."
    assert panel.locate_box.isVisible()
    plot = panel.locate_box.plot.getPlotItem()
    line, dots, star = plot.listDataItems()
    assert len(dots.xData) == len(loc.depth_series()[0]) and list(star.xData) == [first.depth]
    labels = [i.label.toPlainText() for i in plot.items if hasattr(i, "label") and i.label]
    assert f"first divergence: {first.module}" in labels and "atol 0.0001" in labels
    screenshot(panel, tmp_path, "checks-locate")

    report = tmp_path / "parity.html"  # the saved report has the located divergence and its plot
    assert run(qtbot, panel, lambda: panel.save_report("parity", str(report))) == "done"
    text = report.read_text()
    assert "Where it diverges" in text and first.module in text and text.count("<svg") == 1

    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done"  # a new run clears it
    assert panel.locate_box.result is None and not panel.locate_box.isVisible()


def test_locate_can_be_cancelled(qtbot: QtBot, panel: ChecksPanel, bert: dict[str, Path]) -> None:
    failed_parity(qtbot, panel, bert)
    assert run(qtbot, panel, lambda: (panel.locate_box.button.click(), panel.cancel())) == \
        "cancelled"
    assert panel.locate_box.result is None and panel.status.text() == "Cancelled."
    assert panel.locate_box.button.isEnabled()


def test_a_passing_run_offers_no_locate(qtbot: QtBot, panel: ChecksPanel,
                                        bert: dict[str, Path]) -> None:
    panel.add_artefacts([str(bert["folder"]), str(bert["onnx"])])
    panel.shapes.setText("batch=1, sequence=8")
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done", panel.banner.message()
    assert panel.parity.passed and not panel.locate_box.button.isEnabled()


def test_locate_uses_the_failing_input_file(qtbot: QtBot, panel: ChecksPanel, bert: dict[str, Path],
                                            tmp_path: Path) -> None:
    """After 'Test the saved cases again', locate looks at the saved case's own inputs."""
    panel.add_artefacts([str(bert["folder"]), str(bert["damaged"])])
    panel.shapes.setText("batch=3, sequence=5")
    panel.save_dir.set_text(str(tmp_path / "failing"))
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done", panel.banner.message()
    panel.retest.click()
    assert panel.npz.paths() and not panel.shapes.isEnabled()
    panel.save_dir.set_text("")
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done", panel.banner.message()
    assert panel.parity.settings["inputs"] == "from .npz files" and not panel.parity.passed
    assert run(qtbot, panel, panel.locate_box.button.click, 120_000) == "done", \
        panel.banner.message()
    loc = panel.locate_box.result
    assert loc.input_shapes["input_ids"] == [3, 5]
    assert loc.first_divergence.module.endswith(DAMAGED)

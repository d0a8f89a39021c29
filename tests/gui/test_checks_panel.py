"""The checks panel: parity table with pass/fail colours, the trust prompt, latency plots, reports,
and a responsive UI while a long latency run works on the worker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt, QThreadPool, QTimer
from pytestqt.qtbot import QtBot

from gui.models.parity_table import status_color
from gui.views.checks import ChecksPanel
from tests.fixtures.check_models import cnn, export_onnx, perturb_initializer
from tests.fixtures.models import FixtureFiles
from tests.gui.conftest import shown


@pytest.fixture()
def panel(qtbot: QtBot) -> ChecksPanel:
    return shown(qtbot, ChecksPanel())


class Prompt:
    """Stands in for the trust QMessageBox: records what it was asked, answers `answer`."""

    def __init__(self, answer: bool) -> None:
        self.answer, self.asked = answer, []

    def __call__(self, parent: object, paths: list[str]) -> bool:
        self.asked.append(paths)
        return self.answer


def run(qtbot: QtBot, panel: ChecksPanel, action: Callable[[], object],
        timeout: int = 60_000) -> str:
    with qtbot.waitSignal(panel.finished, timeout=timeout) as blocker:
        action()
    qtbot.waitUntil(lambda: not panel.bar.is_busy(), timeout=5_000)
    return blocker.args[0]


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The check fixture CNN as ONNX (dynamic batch) and as TorchScript."""
    root = tmp_path_factory.mktemp("cnn")
    model = cnn()
    ts = root / "cnn.torchscript.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(2, 3, 8, 8)), ts)
    return {"onnx": export_onnx(model, root / "cnn.onnx", ["output"]), "torchscript": ts}


def test_parity_torchscript_vs_onnx_passes(qtbot: QtBot, panel: ChecksPanel,
                                           files: FixtureFiles) -> None:
    panel.trust_prompt = prompt = Prompt(True)
    panel.set_artefacts(str(files["torchscript"]), str(files["onnx"]))
    assert run(qtbot, panel, panel.parity_button.click) == "done", panel.banner.message()
    assert prompt.asked == [[str(files["torchscript"])]]  # asked once, for the code file only
    model = panel.table_model
    passed, total = model.counts()
    assert total >= 1 and passed == total and panel.parity
    assert panel.summary.text() == f"✓  {total} of {total} cases pass"
    index = model.index(0, 0)
    assert model.data(index, Qt.ItemDataRole.BackgroundRole) == \
        status_color(panel.palette(), "pass")
    assert model.data(model.index(0, 2)) == "pass"
    assert run(qtbot, panel, panel.parity_button.click) == "done"
    assert len(prompt.asked) == 1  # trusted once per file and session


def test_declining_the_trust_prompt_runs_nothing(qtbot: QtBot, panel: ChecksPanel,
                                                 files: FixtureFiles) -> None:
    panel.trust_prompt = Prompt(False)
    panel.set_artefacts(str(files["torchscript"]), str(files["onnx"]))
    assert run(qtbot, panel, panel.parity_button.click) == "declined"
    assert panel.parity is None and panel.table_model.rowCount() == 0


def test_a_perturbed_onnx_fails_in_the_fail_colour(qtbot: QtBot, panel: ChecksPanel,
                                                   files: FixtureFiles, tmp_path: Path) -> None:
    bad = perturb_initializer(files["onnx"], tmp_path / "bad.onnx", "fc.bias", 0, 5.0)
    panel.set_artefacts(str(files["onnx"]), str(bad))
    assert run(qtbot, panel, panel.parity_button.click) == "done"
    model = panel.table_model
    assert model.counts() == (0, 1) and model.status(0) == "fail"
    assert model.data(model.index(0, 2)) == "FAIL"
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) == \
        status_color(panel.palette(), "fail")
    assert "the largest difference is" in model.data(model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert panel.summary.text() == "✗  0 of 1 cases pass"
    html, js = tmp_path / "parity.html", tmp_path / "parity.json"
    for path in (html, js):
        assert run(qtbot, panel, lambda p=path: panel.save_report("parity", str(p))) == "done"
    assert "Parity: FAIL" in html.read_text()
    assert json.loads(js.read_text())["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "parity.html",
                                                          "parity.json"]  # no temp files left


def test_an_invalid_shape_list_is_a_plain_error(qtbot: QtBot, panel: ChecksPanel,
                                                files: FixtureFiles) -> None:
    panel.set_artefacts(str(files["onnx"]), str(files["onnx"]))
    panel.shapes.setText("batch=one")
    assert run(qtbot, panel, panel.parity_button.click) == "error"
    assert panel.banner.message().startswith("'batch=one' is not a shape setting")


def test_the_spec_fills_the_default_shapes(panel: ChecksPanel) -> None:
    panel.spec.set_text("x: float32[batch(1..64), 3, 8, 8]")
    assert panel.shapes.text() == "batch=1; batch=16; batch=64"


def test_latency_run_draws_the_plots(qtbot: QtBot, panel: ChecksPanel,
                                     cnn_files: dict[str, Path], tmp_path: Path) -> None:
    import pyqtgraph as pg

    panel.trust_prompt = Prompt(True)
    panel.set_artefacts(str(cnn_files["onnx"]), str(cnn_files["torchscript"]))
    panel.batches.setText("1,2")
    panel.runs.setValue(3)
    panel.warmup.setValue(1)
    assert run(qtbot, panel, panel.latency_button.click) == "done", panel.banner.message()
    assert panel.latency is not None and panel.latency.ok
    assert len(panel.line_plot.getPlotItem().listDataItems()) == 2 * 3  # 2 backends x p50/90/99
    bars = [i for i in panel.bar_plot.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 2
    assert all(b.stats.runs == 3 for r in panel.latency.runners for b in r.batches)
    report = tmp_path / "latency.html"
    assert run(qtbot, panel, lambda: panel.save_report("latency", str(report))) == "done"
    assert "<svg" in report.read_text()


def _timer_gaps_ms(work: Callable[[], None]) -> tuple[np.ndarray, np.ndarray]:
    """Gaps between the ticks of a 10 ms QTimer on the GUI thread while `work` runs: wall-clock
    time, and the CPU time the GUI thread itself used within each gap (both in ms)."""
    ticks: list[tuple[float, float]] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append((time.perf_counter(), time.thread_time())))
    timer.start()
    try:
        work()
    finally:
        timer.stop()
    gaps = np.diff(np.array(ticks), axis=0) * 1000
    return gaps[:, 0], gaps[:, 1]


def test_the_ui_stays_responsive_during_a_long_run(qtbot: QtBot, panel: ChecksPanel,
                                                   cnn_files: dict[str, Path]) -> None:
    """A 10 ms QTimer keeps firing while latency runs for ~2 s on the worker (runner loading,
    first runs and thousands of timed runs with progress reports), and while the result is drawn.

    On a quiet 2-core machine: median 10 ms, p99 ~15-25 ms, max 35-80 ms (the few gaps above 50 ms
    are torch.jit.load / onnxruntime session creation holding the GIL on the worker, and creating
    the two plot widgets on the GUI thread). A real freeze (importing pyqtgraph on the GUI thread,
    drawing a big plot there) is 600 ms and more. On a machine loaded by other processes the
    longest wall-clock gaps grow to 100-650 ms whatever the app does (a worker preempted while it
    holds the GIL), so the bounds are on what the app controls:
    - work on the GUI thread: the CPU time the GUI thread itself uses within one gap stays under
      50 ms (p99) and 250 ms (max) -- other processes' load does not inflate it;
    - the GUI thread is not kept waiting most of the time: the median wall-clock gap stays under
      20 ms (10-11 ms measured, quiet or at a load of 7 on 2 cores)."""
    panel.trust_prompt = Prompt(True)
    panel.set_artefacts(str(cnn_files["onnx"]), str(cnn_files["torchscript"]))
    panel.batches.setText("1,2")
    panel.runs.setValue(100_000)
    panel.warmup.setValue(5)
    panel.budget.setText("0.5")
    outcome: list[str] = []
    wall, cpu = _timer_gaps_ms(lambda: outcome.append(run(qtbot, panel, panel.latency_button.click)))
    assert outcome == ["done"], panel.banner.message()
    runs = sum(b.stats.runs for r in panel.latency.runners for b in r.batches)
    print(f"\n{len(wall)} timer gaps during {runs} timed runs: median {np.median(wall):.1f} ms, "
          f"p99 {np.percentile(wall, 99):.1f} ms, max {wall.max():.1f} ms; GUI-thread CPU per gap: "
          f"p99 {np.percentile(cpu, 99):.1f} ms, max {cpu.max():.1f} ms")
    assert runs > 100 and len(wall) > 100
    assert np.percentile(cpu, 99) < 50 and cpu.max() < 250
    assert np.median(wall) < 20


def test_shutdown_cancels_a_running_job(qtbot: QtBot, panel: ChecksPanel,
                                        cnn_files: dict[str, Path]) -> None:
    panel.set_artefacts(str(cnn_files["onnx"]), str(cnn_files["onnx"]))
    panel.runs.setValue(100_000)
    panel.budget.setText("30")
    panel.latency_button.click()
    qtbot.waitUntil(lambda: panel.bar.job is not None
                    and panel.bar.label.text().startswith("Measuring latency"), timeout=10_000)
    pool = QThreadPool.globalInstance()
    panel.shutdown()  # what the main window does before closing the tab
    assert pool.waitForDone(5_000) and panel.latency is None and not panel.bar.is_busy()

"""The export panel greys out the targets that cannot work here, with core.capabilities' reason as the
tooltip and as text, found on the worker (never on the GUI thread); Help ▸ Capabilities shows the
whole `doctor` report."""

from __future__ import annotations

import threading

import pytest
from pytestqt.qtbot import QtBot

import core.capabilities
import core.runtime.compiled
from core.capabilities import targets_and_runners
from gui.app import MainWindow
from gui.views import export_targets
from gui.views.export import ExportPanel
from gui.views.export_capabilities import CapabilitiesDialog
from gui.views.export_targets import UNAVAILABLE, TargetProbe

PROBE_MS = 60_000  # a loaded machine


def probed_panel(qtbot: QtBot) -> ExportPanel:
    probe = TargetProbe()
    panel = ExportPanel(probe=probe)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitUntil(lambda: probe.problems is not None, timeout=PROBE_MS)
    return panel


def test_hidden_compiler_and_package_grey_out_their_targets(qtbot: QtBot,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(core.runtime.compiled.shutil, "which", lambda _name: None)
    real_version = core.capabilities.package_version
    monkeypatch.setattr(core.capabilities, "package_version",
                        lambda name: None if name == "executorch" else real_version(name))
    threads: list[threading.Thread] = []
    real_probe = export_targets.target_problems

    def recording_probe() -> dict[str, str | None]:
        threads.append(threading.current_thread())
        return real_probe()

    monkeypatch.setattr(export_targets, "target_problems", recording_probe)
    panel = probed_panel(qtbot)
    assert threads and threads[0] is not threading.main_thread()
    aoti, executorch = panel.aoti, panel.executorch
    assert not aoti.isEnabled() and not aoti.isChecked()
    assert aoti.toolTip() == UNAVAILABLE + "AOTInductor needs a C++ compiler, but no C++ compiler " \
                                           "(g++ or clang++) was found on this machine."
    assert not executorch.isEnabled()
    assert "executorch package is not installed" in executorch.toolTip()
    notes = panel.targets_box.notes
    assert notes["aoti"].isVisible() and "C++ compiler" in notes["aoti"].text()
    assert notes["executorch"].isVisible() and not notes["onnx"].isVisible()
    for name in ("onnx", "torchscript", "pt2"):
        assert panel.targets_box.boxes[name].isEnabled(), name
    aoti.setChecked(True)  # a disabled box is never exported, even if ticked by code
    assert panel.targets() == ["onnx", "torchscript"]
    assert not panel.targets_box.checking.isVisible()


def test_the_boxes_say_what_doctor_says(qtbot: QtBot) -> None:
    panel = probed_panel(qtbot)
    expected = {c.name: c.reason for c in targets_and_runners(probe=False) if c.kind == "target"}
    assert set(expected) == set(panel.targets_box.boxes)
    for name, box in panel.targets_box.boxes.items():
        assert box.isEnabled() == (expected[name] is None), name
        assert box.toolTip() == (UNAVAILABLE + expected[name] if expected[name] else ""), name


def test_a_failed_probe_leaves_the_targets_usable(qtbot: QtBot,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import CheckpointError

    def broken() -> dict[str, str | None]:
        raise CheckpointError("The capability check broke.")

    monkeypatch.setattr(export_targets, "target_problems", broken)
    panel = probed_panel(qtbot)
    assert all(box.isEnabled() for box in panel.targets_box.boxes.values())
    assert panel.targets_box.checking.text() == \
        "Could not check which targets work here: The capability check broke."


def test_the_probe_runs_once_per_process(qtbot: QtBot) -> None:
    probe = TargetProbe.shared()
    assert TargetProbe.shared() is probe
    first = ExportPanel()
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: probe.problems is not None, timeout=PROBE_MS)
    second = ExportPanel()
    qtbot.addWidget(second)
    assert not probe.is_running()  # the second panel used the answer it had
    assert second.targets_box.probe is probe
    assert [b.isEnabled() for b in second.targets_box.boxes.values()] == \
        [b.isEnabled() for b in first.targets_box.boxes.values()]


def test_help_capabilities_shows_the_doctor_report(qtbot: QtBot, window: MainWindow) -> None:
    from core.capabilities import capabilities, render

    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    [action] = [a for a in help_menu.actions() if a.text() == "&Capabilities…"]
    action.trigger()
    dialog = window._capabilities_dialog
    assert isinstance(dialog, CapabilitiesDialog) and dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=PROBE_MS)
    assert dialog.report.toPlainText() == render(capabilities())
    assert "export targets (--to):" in dialog.report.toPlainText() and dialog.copy.isEnabled()
    dialog.close()
    window.panel_actions["export"].trigger()  # the Targets box opens the same window
    panel = window.tabs.currentWidget()
    assert isinstance(panel, ExportPanel)
    panel.targets_box.details.click()
    assert window._capabilities_dialog is dialog and dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=PROBE_MS)
    qtbot.waitUntil(lambda: panel.targets_box.probe.problems is not None, timeout=PROBE_MS)

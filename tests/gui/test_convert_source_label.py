"""The convert panel's source box names the files it is converting: dropped files (queued without
being "chosen") must not leave it saying "No file chosen"."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from gui.views.convert import ConvertPanel
from tests.fixtures.models import FixtureFiles
from tests.gui.test_convert_panel import panel, run_drop  # noqa: F401 - the fixture


def test_dropped_files_are_named_in_the_source_box(qtbot: QtBot, panel: ConvertPanel,  # noqa: F811
                                                   files: FixtureFiles) -> None:
    assert panel.source_label.text().startswith("No file chosen")
    dropped = [files[k] for k in ("state_dict", "safetensors", "lightning", "legacy")]
    run_drop(qtbot, panel, dropped)
    assert panel.queue.rowCount() == 4 and len(panel.results) == 4
    text = panel.source_label.text()
    assert "No file chosen" not in text
    assert "<b>state_dict.pt, model.safetensors, lightning.ckpt</b> and 1 more" in text
    assert "queued below" in text
    assert panel.source_label.toolTip().split("\n") == [str(p) for p in dropped]


def test_chosen_files_keep_their_names_after_a_drop(qtbot: QtBot, panel: ConvertPanel,  # noqa: F811
                                                    files: FixtureFiles) -> None:
    panel.set_sources([str(files["state_dict"])])
    qtbot.waitUntil(lambda: not panel.is_busy())
    chosen = panel.source_label.text()
    assert "<b>state_dict.pt</b>" in chosen and f"in {Path(files['state_dict']).parent}" in chosen
    run_drop(qtbot, panel, [files["safetensors"]])
    assert panel.source_label.text() == chosen  # the Convert button still converts the chosen file

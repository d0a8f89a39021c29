"""A Hugging Face model folder in the checks panel: listed by what it runs as ("Hugging Face:
BertModel (feature-extraction)"), run as the transformers model against its ONNX export with the
folder's own inputs (padded masks), never behind the trust prompt; bad folders are one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

pytest.importorskip("transformers", reason="transformers (the 'hf' extra) is not installed")

from gui.views.checks import ChecksPanel  # noqa: E402
from tests.fixtures.hf_folders import bert_with_onnx  # noqa: E402
from tests.gui.conftest import shown  # noqa: E402
from tests.gui.test_checks_panel import Prompt, run  # noqa: E402

LABEL = "Hugging Face: BertModel (feature-extraction)"


@pytest.fixture()
def panel(qtbot: QtBot) -> ChecksPanel:
    return shown(qtbot, ChecksPanel())


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return bert_with_onnx(tmp_path_factory.mktemp("hf_checks"))


def test_a_model_folder_is_listed_by_what_it_runs_as(qtbot: QtBot, panel: ChecksPanel,
                                                     bert: dict[str, Path]) -> None:
    panel.trust_prompt = prompt = Prompt(True)
    panel.add_artefacts([str(bert["folder"]), str(bert["onnx"])])
    assert panel.reference.currentText() == LABEL
    assert panel.pickers[0].source() == str(bert["folder"])
    assert panel.candidate.currentText() == str(bert["onnx"])
    assert panel.reference.itemData(panel.reference.currentIndex(),
                                    Qt.ItemDataRole.ToolTipRole) == str(bert["folder"])

    assert run(qtbot, panel, panel.parity_button.click, timeout=120_000) == "done", \
        panel.banner.message()
    assert prompt.asked == []  # the folder's weights are data: nothing to trust
    result = panel.parity
    assert result is not None and result.passed, panel.status.text()
    assert result.reference["backend"] == "eager" and result.candidate["backend"] == "onnxruntime"
    outputs = {panel.table_model.data(panel.table_model.index(r, 1))
               for r in range(panel.table_model.rowCount())}
    assert outputs == {"last_hidden_state", "pooler_output"}
    assert "padded" in result.settings["inputs"]
    assert panel.summary.text().startswith("✓")


def test_browse_picks_a_model_folder(panel: ChecksPanel, bert: dict[str, Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *_a, **_k: str(bert["folder"])))
    picker = panel.pickers[1]
    [file_action, folder_action] = picker.browse.menu().actions()
    assert folder_action.text() == "Hugging Face model folder…"
    folder_action.trigger()
    assert panel.candidate.currentText() == LABEL and picker.source() == str(bert["folder"])
    panel.candidate.setCurrentText(str(bert["onnx"]))  # typed over: the typed path counts
    assert picker.source() == str(bert["onnx"])


def test_a_folder_of_an_unknown_model_type_is_one_sentence(qtbot: QtBot, panel: ChecksPanel,
                                                           bert: dict[str, Path],
                                                           tmp_path: Path) -> None:
    folder = tmp_path / "strange"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-model",
                                                    "architectures": ["NoSuchModel"]}))
    (folder / "model.safetensors").write_bytes((bert["folder"] / "model.safetensors").read_bytes())
    panel.add_artefacts([str(folder), str(bert["onnx"])])
    assert panel.reference.currentText() == "Hugging Face: NoSuchModel (feature-extraction)"
    assert run(qtbot, panel, panel.parity_button.click) == "error"
    message = panel.banner.message()
    assert "no-such-model" in message and "Traceback" not in message
    assert panel.parity is None


def test_a_pooled_export_is_checked_against_the_pooled_folder(qtbot: QtBot, panel: ChecksPanel,
                                                              tmp_path: Path) -> None:
    """A sentence-transformers folder exported with its pooling inside the graph: the folder is
    offered with the same options, so both sides give `sentence_embedding`, in parity and latency."""
    from core.export import export
    from core.hf.model import load_hf_model
    from tests.fixtures.hf_folders import sentence_transformers_folder

    folder = sentence_transformers_folder(tmp_path / "minilm")
    hf = load_hf_model(folder, pooling=True)
    [result] = export(hf.module, hf.specs, ["onnx"], tmp_path / "out", hf.export_options(name="pooled"))
    panel.add_artefacts([str(folder), result.path], hf_options={"pooling": True})
    assert panel.reference.currentText() == f"{LABEL} + sentence pooling"
    assert panel.pickers[0].runner_options() == {"pooling": True}
    assert panel.pickers[1].runner_options() is None  # a file takes no options
    panel.shapes.setText("batch=2, sequence=8; batch=1, sequence=12")
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done", panel.banner.message()
    assert panel.parity.passed and {o.name for c in panel.parity.cases for o in c.outputs} == \
        {"sentence_embedding"}
    panel.batches.setText("1")
    panel.runs.setValue(2)
    panel.warmup.setValue(0)
    assert run(qtbot, panel, panel.latency_button.click, 120_000) == "done", panel.banner.message()
    assert len(panel.latency.runners) == 2 and panel.latency.ok

    panel.add_artefacts([str(folder), result.path])  # the plain folder is another item
    assert panel.reference.currentText() == LABEL and panel.reference.count() == 3
    assert run(qtbot, panel, panel.parity_button.click, 120_000) == "done"
    assert panel.parity.cases[0].error and "sentence_embedding" in panel.parity.cases[0].error

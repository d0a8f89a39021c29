"""The export panel with a Hugging Face folder: the model named from config.json with the task
selectable, the task's real inputs filled in, an ONNX export with them and the model's output names,
and plain sentences for folders that cannot be built."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from PySide6.QtWidgets import QApplication, QScrollArea
from pytestqt.qtbot import QtBot

from gui.views.export import ExportPanel
from tests.gui.conftest import shown
from tests.gui.test_export_panel import run

pytest.importorskip("transformers", reason="Hugging Face folders need transformers")
from tests.fixtures.hf_folders import bert_folder  # noqa: E402 - needs transformers

DESCRIBE_MS = 60_000  # the first description imports torch and transformers


@pytest.fixture()
def panel(qtbot: QtBot) -> ExportPanel:
    return shown(qtbot, ExportPanel())


def export_onnx(qtbot: QtBot, panel: ExportPanel, tmp_path: Path, *, strict: bool = True) -> Path:
    """Export ONNX only into tmp_path/out; the folder, once the export is done."""
    out = tmp_path / "out"
    out.mkdir()
    panel.out_dir.set_text(str(out))
    panel.torchscript.setChecked(False)
    panel.non_strict.setChecked(not strict)
    assert run(qtbot, panel, panel.export_button.click, timeout=120_000) == "done", \
        panel.banner.message()
    return out


def described(qtbot: QtBot, panel: ExportPanel, path: Path) -> None:
    with qtbot.waitSignal(panel.hf.described, timeout=DESCRIBE_MS):
        panel.set_checkpoint(str(path))


def assert_fits(panel: ExportPanel) -> None:
    """The form's column needs no horizontal scrolling with every row of a folder shown."""
    for _ in range(5):  # layout requests climb one parent per pass
        QApplication.processEvents()
    scroll = panel.findChild(QScrollArea)
    assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width()
    assert not scroll.horizontalScrollBar().isVisible()


def onnx_io(path: Path) -> tuple[list[str], list[str]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def test_a_folder_is_preselected_and_exports_with_its_real_inputs(qtbot: QtBot, panel: ExportPanel,
                                                                   tmp_path: Path) -> None:
    folder = bert_folder(tmp_path / "tiny-bert")
    described(qtbot, panel, folder)
    assert panel.hf.isVisible() and panel.hf.title.text() == \
        "Hugging Face: BertModel (feature-extraction)"
    assert panel.source.text() == str(folder) and not panel.kwargs.isEnabled()
    assert not panel.trust.isVisible() and not panel.trust_note.isVisible()
    assert [s.name for s in panel.spec.specs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert "input_ids: int64[batch" in panel.spec.text()
    assert panel.name.text() == "tiny-bert"
    out = export_onnx(qtbot, panel, tmp_path)
    # strict load: the stale position_ids buffer is forgiven by BertModel's own rules
    assert panel.report_title.text().startswith("✓ The weights fit the model")
    [result] = panel.results
    assert result.ok and Path(result.path) == out / "tiny-bert.onnx"
    assert onnx_io(out / "tiny-bert.onnx") == (["input_ids", "attention_mask", "token_type_ids"],
                                               ["last_hidden_state", "pooler_output"])
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert panel.check_paths() == [str(folder), str(out / "tiny-bert.onnx")]


def test_the_task_is_selectable(qtbot: QtBot, panel: ExportPanel, tmp_path: Path) -> None:
    folder = bert_folder(tmp_path / "tiny-bert")
    described(qtbot, panel, folder / "model.safetensors")  # a weights file inside the folder
    assert panel.source.text() == str(folder)
    assert panel.weights.text() == str(folder / "model.safetensors")
    with qtbot.waitSignal(panel.hf.described, timeout=DESCRIBE_MS):
        panel.hf.task.setCurrentText("text-classification")
        panel.hf.task.activated.emit(panel.hf.task.currentIndex())
    assert panel.hf.title.text() == \
        "Hugging Face: BertForSequenceClassification (text-classification)"
    out = export_onnx(qtbot, panel, tmp_path, strict=False)  # the base weights have no classifier head
    assert panel.report_title.text().startswith("⚠ The weights do not fully fit")
    assert onnx_io(out / "tiny-bert.onnx")[1] == ["logits"]


def test_strict_loading_refuses_a_missing_head(qtbot: QtBot, panel: ExportPanel,
                                               tmp_path: Path) -> None:
    folder = bert_folder(tmp_path / "tiny-bert")
    described(qtbot, panel, folder)
    with qtbot.waitSignal(panel.hf.described, timeout=DESCRIBE_MS):
        panel.hf.task.setCurrentText("token-classification")
        panel.hf.task.activated.emit(panel.hf.task.currentIndex())
    out = tmp_path / "out"
    out.mkdir()
    panel.out_dir.set_text(str(out))
    assert run(qtbot, panel, panel.export_button.click, timeout=120_000) == "error"
    assert "do not fit the model its config.json describes" in panel.banner.message()
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("config", "expected"), [
    ({"model_type": "my-own", "architectures": ["MyModel"], "auto_map": {"AutoModel": "m.MyModel"}},
     "needs Python code shipped with the folder"),
    ({"model_type": "no-such-type"}, "is not one that the installed transformers"),
])
def test_a_folder_that_cannot_be_built_is_one_sentence(qtbot: QtBot, panel: ExportPanel,
                                                       tmp_path: Path, config: dict[str, object],
                                                       expected: str) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "m.py").write_text("raise SystemExit('never run')\n")
    with qtbot.waitSignal(panel.hf.failed, timeout=DESCRIBE_MS):
        panel.set_checkpoint(str(folder))
    assert expected in panel.banner.message()
    assert "Traceback" not in panel.banner.message()
    assert panel.hf.title.text() == "Hugging Face: odd cannot be built"


def test_a_python_source_hides_the_folder_row(qtbot: QtBot, panel: ExportPanel,
                                              tmp_path: Path) -> None:
    folder = bert_folder(tmp_path / "tiny-bert")
    described(qtbot, panel, folder)
    panel.source.set_text("tests.fixtures.export_models:mlp")
    assert not panel.hf.isVisible() and not panel.hf.active() and panel.kwargs.isEnabled()
    assert panel.trust.isVisible()
    assert panel.check_paths() == []


def test_a_sentence_transformers_folder_can_pool_in_the_graph(qtbot: QtBot, panel: ExportPanel,
                                                              tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import BertModel

    from tests.fixtures.hf_folders import sentence_transformers_folder

    folder = sentence_transformers_folder(tmp_path / "tiny-st")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    described(qtbot, panel, folder)
    assert panel.hf.pooling.isVisible() and not panel.hf.pooling.isChecked()
    assert panel.hf.pooling.toolTip() == ("Its sentence-transformers pooling, from modules.json: "
                                         "mean_tokens, L2-normalised; the exported file returns the "
                                         "sentence embedding.")
    panel.hf.pooling.setChecked(True)
    panel.preprocess.setChecked(True)  # every optional row shown
    assert panel.hf.tokenizer.isVisible()
    assert_fits(panel)
    panel.preprocess.setChecked(False)
    out = export_onnx(qtbot, panel, tmp_path)
    path = out / "tiny-st.onnx"
    assert onnx_io(path) == (["input_ids", "attention_mask", "token_type_ids"], ["sentence_embedding"])
    ids = np.random.default_rng(0).integers(0, 120, (2, 7), dtype=np.int64)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3], dtype=np.int64)  # the second one padded
    types = np.zeros_like(ids)
    [got] = ort.InferenceSession(str(path)).run(None, {"input_ids": ids, "attention_mask": mask,
                                                       "token_type_ids": types})
    with torch.no_grad():
        tokens = BertModel.from_pretrained(folder).eval()(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types)).last_hidden_state
    mean = (tokens * torch.from_numpy(mask)[..., None]).sum(1) / torch.from_numpy(mask).sum(1)[:, None]
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()  # the documented formula
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_tokenizer_is_recorded_by_reference(qtbot: QtBot, panel: ExportPanel,
                                                tmp_path: Path) -> None:
    import hashlib

    from core.inputs.preprocess import METADATA_KEY, from_json
    from gui.views.inspect import InspectView
    from tests.gui.conftest import wait_done

    folder = bert_folder(tmp_path / "tiny-bert")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    described(qtbot, panel, folder)
    assert panel.hf.tokenizer.isVisible() and panel.hf.tokenizer.isChecked()
    assert panel.hf.tokenizer.toolTip() == "By reference, with the hashes of vocab.txt"
    out = export_onnx(qtbot, panel, tmp_path)
    model = onnx.load(str(out / "tiny-bert.onnx"), load_external_data=False)
    spec = from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert spec.kind == "text" and spec.tokenizer == "tiny-bert" and not spec.baked
    assert spec.tokenizer_files == {
        "vocab.txt": hashlib.sha256((folder / "vocab.txt").read_bytes()).hexdigest()}
    view = wait_done(qtbot, InspectView(out / "tiny-bert.onnx"))
    qtbot.addWidget(view)
    assert view.preprocess.text() == \
        "Preprocessing (recorded; apply it before feeding the model): text: tokenizer tiny-bert"


def test_a_folder_without_tokenizer_files_records_none(qtbot: QtBot, panel: ExportPanel,
                                                       tmp_path: Path) -> None:
    described(qtbot, panel, bert_folder(tmp_path / "tiny-bert"))
    assert not panel.hf.tokenizer.isVisibleTo(panel) and panel.hf.text_preprocess() is None
    assert panel.options().preprocess is None

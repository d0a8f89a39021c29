"""The export panel's preprocessing form: the fields make the same spec `export --preprocess` parses,
a bad field is one sentence and nothing is written, and an export with the spec baked in takes raw
uint8 NHWC pixels and gives the model's output on the normalised image; the inspect view shows the
spec the file records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pytestqt.qtbot import QtBot

from core.inputs.preprocess import METADATA_KEY, from_json, parse_preprocess
from gui.views.export import ExportPanel
from gui.views.inspect import InspectView
from tests.fixtures.export_models import SPECS, cnn
from tests.gui.conftest import shown, wait_done
from tests.gui.test_export_panel import run

SOURCE = "tests.fixtures.export_models:cnn"
IMAGENET_TEXT = ("image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, rgb, "
                 "layout nhwc, uint8")


@pytest.fixture()
def panel(qtbot: QtBot) -> ExportPanel:
    return shown(qtbot, ExportPanel(), (1280, 900))


def fill_imagenet_nhwc_uint8(panel: ExportPanel) -> None:
    box = panel.preprocess
    box.setChecked(True)
    box.imagenet.click()
    box.layout.setCurrentText("NHWC")
    box.dtype.setCurrentText("uint8")


def test_the_fields_make_the_cli_spec(panel: ExportPanel) -> None:
    box = panel.preprocess
    assert box.spec() is None and box.error() == "" and not box.baked()  # unticked: nothing
    fill_imagenet_nhwc_uint8(panel)
    assert box.text() == IMAGENET_TEXT
    assert box.spec() == parse_preprocess(IMAGENET_TEXT)
    assert box.spec_label.text() == f"As text: {IMAGENET_TEXT}"
    box.order.setCurrentText("BGR")
    box.resize_edit.setText("256")
    box.crop.setText("224x224")
    box.mean.setText("0.5 0.5 0.5")  # spaces instead of commas are fine
    spec = box.spec()
    assert spec is not None and spec.channel_order == "bgr" and spec.resize == (256,)
    assert spec.crop == (224, 224) and spec.mean == (0.5, 0.5, 0.5)
    assert parse_preprocess(spec.to_text()) == spec
    box.bake.setChecked(True)
    assert box.baked()
    options = panel.options()
    assert options.preprocess == spec and options.bake_preprocess


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("mean", "0.5,0.5", "mean has 2 values but the image has 3 channels"),
    ("std", "0", "std must not be 0"),
    ("crop", "300x300", "is bigger than the resized image"),
    ("scale", "a/b", ""),
])
def test_a_bad_field_is_one_sentence_and_nothing_is_written(qtbot: QtBot, panel: ExportPanel,
                                                            tmp_path: Path, field: str, value: str,
                                                            expected: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    panel.source.set_text(SOURCE)
    panel.out_dir.set_text(str(out))
    panel.spec.set_text(SPECS["cnn"])
    fill_imagenet_nhwc_uint8(panel)
    panel.preprocess.resize_edit.setText("256")
    {"mean": panel.preprocess.mean, "std": panel.preprocess.std, "crop": panel.preprocess.crop,
     "scale": panel.preprocess.scale}[field].setText(value)
    message = panel.preprocess.error()
    assert message.startswith("The preprocessing spec is not valid: ") and expected in message
    assert panel.preprocess.error_label.isVisible() and panel.preprocess.error_label.text() == message
    assert run(qtbot, panel, panel.export_button.click) == "error"
    assert panel.banner.message() == message
    assert list(out.iterdir()) == []


def test_a_baked_export_takes_raw_pixels(qtbot: QtBot, panel: ExportPanel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    panel.source.set_text(SOURCE)
    panel.out_dir.set_text(str(out))
    panel.spec.set_text(SPECS["cnn"])
    panel.onnx_exporter.setCurrentText("legacy")
    panel.torchscript.setChecked(False)
    fill_imagenet_nhwc_uint8(panel)
    panel.preprocess.bake.setChecked(True)
    assert run(qtbot, panel, panel.export_button.click, timeout=120_000) == "done", \
        panel.banner.message()
    path = out / "model.onnx"
    model = onnx.load(str(path))
    recorded = {p.key: p.value for p in model.metadata_props}
    spec = from_json(recorded[METADATA_KEY])
    assert spec.baked and spec.to_text() == IMAGENET_TEXT
    [graph_input] = model.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:] == [8, 8, 3]  # NHWC
    raw = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    [got] = ort.InferenceSession(str(path)).run(None, {graph_input.name: raw})
    mean, std = torch.tensor(spec.means()).view(1, 3, 1, 1), torch.tensor(spec.stds()).view(1, 3, 1, 1)
    normalised = (torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        expected = cnn()(normalised).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    view = wait_done(qtbot, InspectView(path))
    qtbot.addWidget(view)
    assert view.state == "ready" and view.preprocess.isVisibleTo(view)
    assert view.preprocess.text() == ("Preprocessing (baked into the graph: it takes raw pixels): "
                                      + IMAGENET_TEXT)


def test_inspect_shows_no_line_without_a_spec(qtbot: QtBot, tmp_path: Path) -> None:
    from tests.fixtures.check_models import export_onnx, two_heads

    path = export_onnx(two_heads(), tmp_path / "plain.onnx", ["logits", "aux"])
    view = wait_done(qtbot, InspectView(path))
    qtbot.addWidget(view)
    assert view.state == "ready" and not view.preprocess.isVisibleTo(view)

"""What the views say and in which order, as the CLI says it: an undefined cosine, numbered modules
in number order, one name filter for the app and the CLI, and a findings banner worded by the scan's
rating of what a file names."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from safetensors.torch import save_file

from core.diff.structure import diff_files
from core.formats import open_checkpoint
from core.inspect import name_matcher as cli_matcher
from gui.models.diff_table import COSINE, DiffTableModel
from gui.models.module_tree import ModuleTreeModel
from gui.models.tensor_table import TensorTableModel
from gui.views.inspect import CODE_BANNER, DATA_BANNER, InspectView
from tests.gui.conftest import wait_done


def test_cosine_against_an_all_zero_tensor_is_undefined(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"zero": torch.zeros(4), "same": torch.ones(4), "turned": torch.tensor([1.0, 0, 0, 0])}, a)
    save_file({"zero": torch.ones(4), "same": torch.ones(4), "turned": torch.tensor([0.0, 1, 0, 0])}, b)
    result = diff_files(a, b, values=True)
    model = DiffTableModel()
    model.set_result(result)
    rows = {model.key(r).name: r for r in range(model.rowCount())}
    zero = model.index(rows["zero"], COSINE)
    assert math.isnan(model.key(rows["zero"]).values.cosine)  # core's value: NaN
    assert zero.data() == "undefined"
    assert "The cosine is undefined: one side is all zeros." in zero.data(Qt.ItemDataRole.ToolTipRole)
    assert "cosine undefined" in zero.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(rows["same"], COSINE).data() == "1.000000"
    model.sort(COSINE, Qt.SortOrder.AscendingOrder)  # least similar first: undefined, 0, 1
    assert [model.key(r).name for r in range(model.rowCount())] == ["zero", "turned", "same"]
    model.sort(COSINE, Qt.SortOrder.DescendingOrder)
    assert [model.key(r).name for r in range(model.rowCount())] == ["same", "turned", "zero"]


def test_the_module_tree_numbers_layers_in_number_order(tmp_path: Path) -> None:
    path = tmp_path / "layers.safetensors"
    weights = {f"encoder.layer.{i}.w": torch.zeros(2) for i in range(12)}
    weights |= {"encoder.norm.w": torch.zeros(2), "embed.w": torch.zeros(2)}
    save_file(weights, path)
    [section] = open_checkpoint(path).sections.values()
    tensors = list(section.tensors.values())
    assert [t.name for t in tensors][:4] == ["embed.w", "encoder.layer.0.w", "encoder.layer.1.w",
                                             "encoder.layer.10.w"]  # the file's (text) order
    model = ModuleTreeModel(tensors)
    [embed, encoder] = [model.index(r, 0) for r in range(model.rowCount())]
    assert (embed.data(), encoder.data()) == ("embed", "encoder")
    layer = model.index(0, 0, encoder)
    assert [model.index(r, 0, encoder).data() for r in range(model.rowCount(encoder))] == \
        ["layer", "norm"]
    assert [model.index(r, 0, layer).data() for r in range(model.rowCount(layer))] == \
        [str(i) for i in range(12)]
    ten = model.index(10, 0, layer)
    assert model.parent(ten) == layer and ten.row() == 10  # rows follow the new order


def test_the_tensor_filter_is_the_cli_filter() -> None:
    from core.model import TensorInfo

    names = ["bn.weight", "layer1.bn.bias", "layer1.conv.weight", "BN2.running_mean"]
    model = TensorTableModel([TensorInfo(name, (2,), "float32") for name in names])
    for text in ("*.bn.*", "bn", "layer?.*", "[bl]*.weight"):
        model.set_filter(text)
        shown = [model.tensor(r).name for r in range(model.rowCount())]
        matcher = cli_matcher(text)
        assert matcher is not None
        assert shown == [n for n in names if matcher(n)], text
    model.set_filter("*.bn.*")  # '*.' also matches at the start, as `inspect --filter` does
    assert [model.tensor(r).name for r in range(model.rowCount())] == ["bn.weight", "layer1.bn.bias"]


def banner(qtbot: QtBot, tmp_path: Path, name: str, payload: object) -> InspectView:
    path = tmp_path / name
    torch.save(payload, path)
    view = InspectView(path)
    qtbot.addWidget(view)
    wait_done(qtbot, view)
    assert view.state == "ready", view.message.message.text()
    return view


def test_inert_data_types_are_not_called_code(qtbot: QtBot, tmp_path: Path) -> None:
    view = banner(qtbot, tmp_path, "args.pt", {"w": torch.zeros(2), "args": argparse.Namespace(lr=0.1)})
    assert view.banner.title.text() == DATA_BANNER
    details = view.banner.details.text.toPlainText()
    assert "argparse.Namespace" in details
    assert "torch.load(weights_only=True) would refuse this file." in details
    assert "torch.serialization.add_safe_globals([argparse.Namespace])" in details


def test_code_is_still_called_code(qtbot: QtBot, tmp_path: Path) -> None:
    view = banner(qtbot, tmp_path, "module.pt", torch.nn.Linear(2, 2))
    assert view.banner.title.text() == CODE_BANNER
    details = view.banner.details.text.toPlainText()
    assert "torch.nn.modules.linear.Linear" in details and "add_safe_globals" not in details

"""The diff view's section pickers (`ckpt-studio diff A B --section-a NAME --section-b NAME` in the
GUI): each side lists its file's sections, starts at the weights, and picking another one diffs again
on the worker; in model mode only A has a picker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from core.diff.structure import ONLY_A, ONLY_B, SAME
from core.diff.values import DIFFERENT, IDENTICAL
from gui.app import MainWindow
from gui.views.diff import DiffView
from gui.views.diff_model import ModelSource
from gui.views.diff_sections import SectionPicker
from tests.fixtures.models import tiny_model
from tests.gui.test_diff_view import open_diff, rows, wait_diff

TINY = "tests.fixtures.models:TinyNet"
EMA_SHIFT = 0.5


def ema_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An EMA copy: every float tensor shifted by EMA_SHIFT; no num_batches_tracked (not averaged)."""
    return {k: v + EMA_SHIFT if v.is_floating_point() else v.clone() for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`train`: model + ema + optimizer + plain values; `other`: model + ema whose EMA has the same
    values as train's; `weights`: a plain state_dict (train's model); `opt_only`: no weights, but
    optimizer tensors; `no_tensors`: only plain values."""
    root = tmp_path_factory.mktemp("sections")
    model = tiny_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    paths = {name: root / f"{name}.pt" for name in ("train", "other", "weights", "opt_only",
                                                    "prefixed", "no_tensors")}
    torch.save({"model": state, "ema": ema_of(state), "optimizer": opt.state_dict(), "epoch": 4},
               paths["train"])
    torch.save({"model": {k: v * 2 for k, v in state.items()}, "ema": ema_of(state)}, paths["other"])
    torch.save(state, paths["weights"])
    torch.save({"optimizer": opt.state_dict(), "epoch": 1}, paths["opt_only"])
    torch.save({"epoch": 1, "lr": 0.1}, paths["no_tensors"])
    torch.save({"model": state, "ema": {f"module.{k}": v for k, v in ema_of(state).items()}},
               paths["prefixed"])
    return paths


def items(picker: SectionPicker) -> list[str]:
    return [picker.combo.itemText(i) for i in range(picker.combo.count())]


def pick(qtbot: QtBot, view: DiffView, picker: SectionPicker, name: str) -> None:
    """Choose `name` in the picker as a user would (the combo's popup, then the item) and wait for
    the new diff."""
    assert picker.isVisible() and picker.combo.isEnabled()
    index = picker.names().index(name)
    with qtbot.waitSignal(view.loaded, timeout=20_000):
        picker.combo.showPopup()
        list_view = picker.combo.view()
        qtbot.mouseClick(list_view.viewport(), Qt.MouseButton.LeftButton,
                         pos=list_view.visualRect(list_view.model().index(index, 0)).center())
    wait_diff(qtbot, view)
    assert picker.current() == name


def compare_values(qtbot: QtBot, view: DiffView) -> None:
    with qtbot.waitSignal(view.values_compared, timeout=20_000):
        qtbot.mouseClick(view.compare_button, Qt.MouseButton.LeftButton)
    wait_diff(qtbot, view)


def test_each_side_lists_its_sections_and_starts_at_the_weights(
        qtbot: QtBot, window: MainWindow, ckpts: dict[str, Path]) -> None:
    view = open_diff(qtbot, window, ckpts["train"], ckpts["weights"])
    assert view.state == "ready", view.message.message.text()
    assert items(view.section_a) == ["model (weights) · 11 tensors", "ema · 10 tensors",
                                     "optimizer · 7 tensors"]  # no 'training' (values only)
    assert view.section_a.current() == "model" and view.section_a.combo.isEnabled()
    assert items(view.section_b) == ["model (weights) · 11 tensors"]
    assert view.section_b.isVisible() and not view.section_b.combo.isEnabled()  # nothing to pick
    assert view.summary.text() == "11 same, 0 shape mismatch, 0 dtype mismatch, 0 only in A, 0 only in B."
    assert set(rows(view).values()) == {SAME}


def test_ema_of_a_against_the_model_of_b(qtbot: QtBot, window: MainWindow,
                                         ckpts: dict[str, Path]) -> None:
    """`diff train.pt weights.pt --section-a ema`, then --values."""
    view = open_diff(qtbot, window, ckpts["train"], ckpts["weights"])
    pick(qtbot, view, view.section_a, "ema")
    assert not view.error.isVisible()
    assert view.opened.result.sections[0].section_a == "ema"
    assert view.summary.text() == "10 same, 0 shape mismatch, 0 dtype mismatch, 0 only in A, 1 only in B."
    assert rows(view)["bn.num_batches_tracked"] == ONLY_B
    assert view.status_buttons[ONLY_B].text() == "Only in B  1"
    assert view.count.text() == "11 keys"

    compare_values(qtbot, view)  # the EMA's values (shifted), not the model's
    assert view.opened.result.value_totals[DIFFERENT] == 10
    assert "Values: 0 identical, 0 close, 10 different." in view.summary.text()
    assert view.value_buttons[DIFFERENT].isVisible()
    assert view.section_a.current() == "ema"  # the value diff keeps the sections

    pick(qtbot, view, view.section_a, "model")  # back to the default: structure only again
    assert view.summary.text() == "11 same, 0 shape mismatch, 0 dtype mismatch, 0 only in A, 0 only in B."
    assert not view.value_buttons[DIFFERENT].isVisible()


def test_both_sides_pick_a_section(qtbot: QtBot, window: MainWindow, ckpts: dict[str, Path]) -> None:
    """`diff train.pt other.pt --section-a ema --section-b ema --values`: the two EMAs match while
    the models do not."""
    view = open_diff(qtbot, window, ckpts["train"], ckpts["other"])
    assert view.section_b.names() == ["model", "ema"] and view.section_b.combo.isEnabled()
    compare_values(qtbot, view)
    assert view.opened.result.value_totals[DIFFERENT] == 10  # model vs model * 2
    pick(qtbot, view, view.section_a, "ema")
    pick(qtbot, view, view.section_b, "ema")
    pairs = [(s.section_a, s.section_b) for s in view.opened.result.sections]
    assert pairs == [("ema", "ema")]
    assert view.summary.text() == "10 same, 0 shape mismatch, 0 dtype mismatch, 0 only in A, 0 only in B."
    compare_values(qtbot, view)
    assert view.opened.result.value_totals[IDENTICAL] == 10
    assert bool(view.opened.result)

    pick(qtbot, view, view.section_a, "optimizer")  # anything with tensors can be compared
    assert view.summary.text().startswith("No common keys: A has 7 tensors and B has 10")


def test_model_mode_has_a_picker_for_a_only(qtbot: QtBot, ckpts: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`diff train.pt --model SOURCE --section-a ema`; then a file as B keeps A's section."""
    view = DiffView(ckpts["train"], ModelSource(TINY))
    qtbot.addWidget(view)
    view.show()
    wait_diff(qtbot, view)
    assert view.state == "ready", view.message.message.text()
    assert view.section_a.isVisible() and not view.section_b.isVisible()
    assert view.summary.text() == "load_state_dict(strict=True) would accept this checkpoint (11 keys)."
    pick(qtbot, view, view.section_a, "ema")
    assert view.summary.text() == ("load_state_dict(strict=True) would fail: 1 missing, 0 "
                                   "unexpected, 0 size mismatch(es).")
    assert view.opened.result.against_model and not view.section_b.isVisible()

    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *_a, **_k: (str(ckpts["other"]), "")))
    with qtbot.waitSignal(view.loaded, timeout=20_000):
        qtbot.mouseClick(view.model_form.file_button, Qt.MouseButton.LeftButton)
    wait_diff(qtbot, view)
    assert view.model_b is None and view.section_b.isVisible()
    assert view.section_a.current() == "ema" and view.section_b.current() == "model"
    assert [(s.section_a, s.section_b) for s in view.opened.result.sections] == [("ema", "model")]


def test_apply_remap_writes_the_picked_section(qtbot: QtBot, window: MainWindow,
                                               ckpts: dict[str, Path], tmp_path: Path) -> None:
    """`diff prefixed.pt weights.pt --section-a ema --apply-remap out.safetensors`: the EMA is what
    gets renamed and written; the written file is then A, with its one section."""
    view = open_diff(qtbot, window, ckpts["prefixed"], ckpts["weights"])
    assert set(rows(view).values()) == {SAME}  # the models match
    pick(qtbot, view, view.section_a, "ema")
    assert view.opened.result.totals[ONLY_A] == 10 and view.opened.result.totals[ONLY_B] == 11
    assert view.suggestions.tree.topLevelItem(0).text(0) == "remove the prefix 'module.'"
    out = tmp_path / "ema.safetensors"
    with qtbot.waitSignal(view.applied, timeout=20_000):
        view.apply_and_save(str(out))
    wait_diff(qtbot, view)
    assert out.is_file() and view.path_a == str(out)
    assert view.section_a.names() == [view.opened.a.weights]  # the written file: one section
    assert view.opened.result.totals[ONLY_B] == 1 and view.opened.result.totals[SAME] == 10
    compare_values(qtbot, view)
    assert view.opened.result.value_totals[DIFFERENT] == 10  # the EMA's values were written


def test_a_b_without_weights_compares_its_tensors(qtbot: QtBot, window: MainWindow,
                                                 ckpts: dict[str, Path]) -> None:
    """A B with no model weights (optimizer state only) is compared through its section that holds
    tensors, as the CLI does; its picker shows which."""
    view = open_diff(qtbot, window, ckpts["train"], ckpts["weights"])
    view.set_side_b(str(ckpts["opt_only"]))
    wait_diff(qtbot, view)
    assert view.path_b == str(ckpts["opt_only"]) and view.section_b.current() == "optimizer"
    assert set(rows(view).values()) == {ONLY_A, ONLY_B}  # parameter names vs optimizer slots


def test_a_b_without_tensors_is_a_plain_error(qtbot: QtBot, window: MainWindow,
                                              ckpts: dict[str, Path]) -> None:
    """With A's EMA picked, a B that holds no tensors at all: a plain sentence in the banner, and
    the diff that was shown stays."""
    view = open_diff(qtbot, window, ckpts["train"], ckpts["weights"])
    pick(qtbot, view, view.section_a, "ema")
    with qtbot.waitSignal(view.failed, timeout=20_000) as blocker:
        view.set_side_b(str(ckpts["no_tensors"]))
    wait_diff(qtbot, view)
    message = blocker.args[0]
    assert message == "File B ('no_tensors.pt') holds no tensors to compare."
    assert view.error.isVisible() and view.error.title.text() == message
    assert "Traceback" not in message
    assert view.path_b == str(ckpts["weights"]) and view.section_a.current() == "ema"
    assert rows(view)["bn.num_batches_tracked"] == ONLY_B
    assert view.section_a.combo.isEnabled()

"""The diff view at mixture-of-experts scale (50k keys): the module tree handed over from the worker
has the counts, worst statuses and largest changes of its keys, and the change plot holds every
compared key once, in model order, with each point (clicked or not) mapped back to its own key."""

from __future__ import annotations

import gc
import math
import random
import weakref
from collections import defaultdict

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from pytestqt.qtbot import QtBot

from core.diff.structure import DTYPE, ONLY_A, ONLY_B, SAME, DiffResult, KeyDiff, SectionDiff, gc_paused
from core.diff.values import CLOSE, DIFFERENT, IDENTICAL, SKIPPED, ValueDiff
from gui.models.diff_table import VALUE_RGB
from gui.models.diff_tree import RANKS, DiffNode, DiffTreeModel, key_change, key_rank, model_order, shown_diff
from gui.models.tensor_table import natural_key
from gui.views.diff_insight import POINT_RGB, DiffInsight
from gui.views.diff_jobs import Opened

LAYERS, EXPERTS = 50, 333  # x 3 weights: 49,950 keys, plus a few odd ones


def moe_result() -> DiffResult:
    """Keys sorted by name, as safetensors stores them (so model order is the natural order), with
    every status: value differences, A all zeros (infinite change), skipped values, missing keys."""
    rng = random.Random(7)
    names = sorted(f"model.layers.{layer}.mlp.experts.{expert}.{w}.weight"
                   for layer in range(LAYERS) for expert in range(EXPERTS) for w in ("w1", "w2", "w3"))
    keys = []
    for name in names:
        status = rng.choice((IDENTICAL, CLOSE, DIFFERENT, DIFFERENT))
        change = {IDENTICAL: 0.0, CLOSE: rng.random() * 1e-4, DIFFERENT: rng.random()}[status]
        if rng.random() < 0.01:
            change = math.inf
        keys.append(KeyDiff(name, SAME, (8, 8), "float32", (8, 8), "float32",
                            values=ValueDiff(status, rel_change=change)))
    keys[5].values = ValueDiff(SKIPPED)
    keys[9] = KeyDiff(keys[9].name, DTYPE, (8, 8), "float32", (8, 8), "float16")  # no value diff
    keys.append(KeyDiff("lm_head.weight", ONLY_A, (8, 8), "float32", None, None))
    keys.append(KeyDiff("model.norm.weight", ONLY_B, None, None, (8,), "float32"))
    keys.sort(key=lambda k: k.name)
    return DiffResult("a.safetensors", "b.safetensors", "safetensors", "safetensors",
                      [SectionDiff("model", "model", keys)], values_compared=True)


@pytest.fixture(scope="module")
def result() -> DiffResult:
    return moe_result()


@pytest.fixture()
def insight(qtbot: QtBot, result: DiffResult) -> DiffInsight:
    view = DiffInsight()
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    view.set_opened(Opened(None, None, result, 0, 0, shown_diff(result)))  # type: ignore[arg-type]
    return view


def expected_modules(keys: list[KeyDiff]) -> dict[str, tuple[int, str, float | None]]:
    """Each module path's (keys, worst status, largest finite change), counted key by key."""
    below: dict[str, list[KeyDiff]] = defaultdict(list)
    for key in keys:
        parts = key.name.split(".")
        for depth in range(len(parts) + 1):
            below[".".join(parts[:depth])].append(key)
    modules = {}
    for path, under in below.items():
        changes = [c for c in map(key_change, under) if c is not None and math.isfinite(c)]
        worst = max((key_rank(k) for k in under), key=RANKS.__getitem__)
        modules[path] = (len(under), worst, max(changes) if changes else None)
    return modules


def test_tree_counts_worst_and_changes_at_50k_keys(insight: DiffInsight, result: DiffResult) -> None:
    keys = result.sections[0].keys
    model = insight.tree_model
    expected = expected_modules(keys)
    paths = ["", "model", "model.layers.7", "model.layers.49.mlp.experts", "model.layers.0.mlp.experts.0",
             "model.layers.0.mlp.experts.100", "lm_head", "model.norm", keys[5].name, keys[9].name]
    for path in paths:
        node = model.node(model.index_of_path(path))
        keys_below, worst, change = expected[path]
        assert (node.keys, node.worst) == (keys_below, worst), path
        assert node.change == change, path
    root = model.root
    assert root.keys == len(keys) and root.worst == ONLY_A
    layers = model.node(model.index_of_path("model.layers"))
    assert [n.name for n in layers.children] == [str(i) for i in range(LAYERS)]  # model order
    every = nodes_with_paths(model)
    assert len(every) == len(expected) and all(
        (node.keys, node.worst) == expected[path][:2] for path, node in every.items())


def nodes_with_paths(model: DiffTreeModel) -> dict[str, DiffNode]:
    """Every node by its path, walked through the Qt model API (index, parent, data) as a view does."""
    found, stack = {"": model.root}, [model.index(0, 0).parent()]
    while stack:
        parent = stack.pop()
        for row in range(model.rowCount(parent)):
            index = model.index(row, 0, parent)
            assert index.parent() == parent
            node = model.node(index)
            path = model.path(node)
            assert path.endswith(index.data()) and index.data(Qt.ItemDataRole.ToolTipRole).startswith(path)
            found[path] = node
            stack.append(index)
    return found


def test_tree_handed_over_equals_tree_built_in_the_view(insight: DiffInsight, result: DiffResult) -> None:
    built = DiffTreeModel()
    built.set_result(result, model_order)
    assert summary(built.root) == summary(insight.tree_model.root)


def test_what_the_worker_builds_holds_no_reference_cycle(result: DiffResult) -> None:
    """The worker's tree and plot data are freed by reference counting alone, the moment the view
    drops them: no cyclic garbage is left for the collector (which runs on the GUI thread)."""
    with gc_paused():
        gc.collect()
        shown = shown_diff(result)
        tree = weakref.ref(shown.tree)
        del shown
        assert tree() is None
        assert gc.collect() == 0


def summary(root: DiffNode) -> list[tuple[object, ...]]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append((node.name, node.row, len(node.children), node.key, node.worst, node.keys, node.change))
        stack.extend(node.children)
    return out


def test_plot_holds_every_compared_key_once_in_model_order(insight: DiffInsight, result: DiffResult) -> None:
    compared = [k for k in result.sections[0].keys if key_change(k) is not None]
    assert [k.name for k in insight.keys] == sorted((k.name for k in compared), key=natural_key)
    items = [i for i in insight.change_plot.getPlotItem().listDataItems() if i is not insight._marker]
    xs = np.concatenate([item.getData()[0] for item in items])
    assert sorted(xs.astype(int).tolist()) == list(range(len(compared)))
    finite = [c for k in compared if math.isfinite(c := key_change(k)) and c > 0]
    ceiling, floor = 10 * max(finite), min(finite) / 10  # where A all zeros and no change are drawn
    for item in items:
        x, y = item.getData()
        places = insight._places[item]
        assert np.array_equal(x.astype(int), places)  # point i of an item is key places[i]
        keys = [insight.keys[p] for p in places]
        assert len({k.values.status for k in keys}) == 1
        endless = {math.isinf(key_change(k)) for k in keys}
        assert endless == {item.opts["symbol"] == "t1"}
        rgb = VALUE_RGB.get(keys[0].values.status) or POINT_RGB
        assert item.opts["symbolBrush"].color().getRgb()[:3] == rgb
        for key, drawn in zip(keys, y, strict=True):
            change = key_change(key)
            expected = ceiling if math.isinf(change) else max(change, floor)
            assert math.isclose(10 ** drawn, expected, rel_tol=1e-9)


def test_every_point_maps_back_to_its_key(qtbot: QtBot, insight: DiffInsight) -> None:
    items = [i for i in insight.change_plot.getPlotItem().listDataItems() if i is not insight._marker]
    picked: list[str] = []
    insight.key_selected.connect(picked.append)
    expected = []
    for item in items:
        points = item.scatter.points()
        for spot in (points[0], points[len(points) // 2], points[-1]):
            insight._on_points_clicked(item, [spot])
            expected.append(insight.keys[int(spot.pos().x())].name)
    assert picked == expected and len(set(picked)) == len(expected)
    target = len(insight.keys) // 3  # a real click, zoomed in so that no other point is under it
    x, y = target, math.log10(insight._drawn_at(key_change(insight.keys[target])))
    view = insight.change_plot.getViewBox()
    view.setRange(xRange=(x - 3, x + 3), yRange=(y - 1, y + 1), padding=0)
    scene = view.mapViewToScene(QPointF(x, y))
    with qtbot.waitSignal(insight.key_selected, timeout=5_000) as blocker:
        qtbot.mouseClick(insight.change_plot.viewport(), Qt.MouseButton.LeftButton,
                         pos=insight.change_plot.mapFromScene(scene))
    assert blocker.args == [insight.keys[target].name]

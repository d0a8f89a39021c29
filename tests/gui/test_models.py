"""Item models over core results: correct subtotals, filtering and sorting; smooth at 200k keys."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from PySide6.QtCore import QModelIndex, Qt

from core.model import BUFFER, PARAMETER, TensorInfo
from gui.models import module_tree, tensor_table
from gui.models.module_tree import ModuleTreeModel
from gui.models.tensor_table import TensorTableModel, name_matcher, natural_key

BIG = 200_000
T = TypeVar("T")


def synthetic(n: int) -> list[TensorInfo]:
    """n tensors named like a deep transformer: layers.{i}.block{j}.proj{k}.weight."""
    out = []
    for i in range(n):
        name = f"layers.{i // 1000}.block{i // 50 % 20}.proj{i % 50}.weight"
        role = BUFFER if i % 7 == 0 else PARAMETER
        out.append(TensorInfo(name, (i % 13 + 1, 8), "float16" if i % 2 else "float32", role=role))
    return out


def tiny() -> list[TensorInfo]:
    return [
        TensorInfo("layers.10.w", (2, 3), "float32", role=PARAMETER),
        TensorInfo("layers.2.w", (4,), "float32", role=PARAMETER),
        TensorInfo("layers.2.b", (4,), "bfloat16", role=PARAMETER),
        TensorInfo("bn.running_mean", (4,), "float32", role=BUFFER),
        TensorInfo("head", (5, 5), "float16", role=PARAMETER),
    ]


def names(model: TensorTableModel) -> list[str]:
    return [model.tensor(r).name for r in range(model.rowCount())]


def test_matcher_substring_and_glob() -> None:
    assert name_matcher("  ") is None
    sub = name_matcher("RUNNING")
    assert sub is not None and sub("bn.running_mean") and not sub("bn.weight")
    glob = name_matcher("layers.*.w")
    assert glob is not None and glob("layers.2.w") and not glob("layers.2.b")
    assert not glob("x.layers.2.w")  # a glob matches the whole name, like `inspect --filter`
    assert natural_key("a.10") > natural_key("a.2")


def test_table_filter_and_sort() -> None:
    model = TensorTableModel(tiny())
    assert model.rowCount() == 5 and model.columnCount() == 5
    assert model.index(0, tensor_table.SHAPE).data() == "[2, 3]"
    assert model.index(0, tensor_table.SIZE).data() == "24 B"
    model.set_filter("layers.*")
    assert names(model) == ["layers.10.w", "layers.2.w", "layers.2.b"]
    model.sort(tensor_table.NAME)
    assert names(model) == ["layers.2.b", "layers.2.w", "layers.10.w"]
    model.sort(tensor_table.SIZE, Qt.SortOrder.DescendingOrder)
    assert names(model) == ["layers.10.w", "layers.2.w", "layers.2.b"]
    model.set_filter("")
    assert names(model)[0] == "head" and model.rowCount() == 5
    model.sort(-1)
    assert names(model) == [t.name for t in tiny()]  # back to file order


def test_a_file_listing_names_alphabetically_shows_them_in_natural_order() -> None:
    """safetensors lists names alphabetically ('layer.11' before 'layer.2'): no model order to
    keep, so the unsorted table puts numbers in numeric order."""
    alphabetical = sorted(tiny(), key=lambda t: t.name)
    assert [t.name for t in alphabetical][2:4] == ["layers.10.w", "layers.2.b"]
    model = TensorTableModel(alphabetical)
    assert names(model) == ["bn.running_mean", "head", "layers.2.b", "layers.2.w", "layers.10.w"]


def test_tree_subtotals_equal_the_sum_of_their_tensors() -> None:
    model = ModuleTreeModel(tiny())
    layers = model.index_of_path("layers")
    assert layers.isValid() and model.rowCount(layers) == 2
    node = model.node(layers)
    assert node.tensors == 3
    assert node.parameters == 6 + 4 + 4
    assert node.nbytes == 24 + 16 + 8
    assert model.index(layers.row(), module_tree.SIZE, QModelIndex()).data() == "48 B"
    bn = model.node(model.index_of_path("bn"))
    assert bn.parameters == 0 and bn.nbytes == 16  # buffers count in size, not in parameters
    leaf = model.index_of_path("layers.2.w")
    assert leaf.data(module_tree.TENSOR_ROLE).name == "layers.2.w"
    assert model.parent(leaf).parent().data() == "layers"
    assert model.root.nbytes == sum(t.nbytes for t in tiny())


def _timed(func: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


@pytest.mark.timeout(120)
def test_200k_keys_stay_smooth() -> None:
    tensors = synthetic(BIG)
    table, build = _timed(lambda: TensorTableModel(tensors))
    assert table.rowCount() == BIG
    _, substring = _timed(lambda: table.set_filter("block3.proj1"))
    assert 0 < table.rowCount() < BIG
    _, glob = _timed(lambda: table.set_filter("layers.1?.*.weight"))
    assert table.rowCount() == 10 * 1000
    _, sort = _timed(lambda: table.sort(tensor_table.SIZE, Qt.SortOrder.DescendingOrder))
    tree, tree_build = _timed(lambda: ModuleTreeModel(tensors))
    assert tree.root.tensors == BIG and tree.rowCount() == 1
    _, tree_filter = _timed(lambda: tree.set_filter("layers.199.block19.*"))
    layers = tree.index(0, 0)
    assert tree.rowCount(layers) == 1 and tree.root.tensors == 50
    _, tree_broad = _timed(lambda: tree.set_filter("*.weight"))
    assert tree.root.tensors == BIG
    timings = dict(build=build, substring=substring, glob=glob, sort=sort, tree_build=tree_build,
                   tree_filter=tree_filter, tree_broad=tree_broad)
    print({k: round(v, 3) for k, v in timings.items()})
    assert build < 3 and substring < 2 and glob < 2 and sort < 3, timings
    assert tree_build < 4 and tree_filter < 2 and tree_broad < 4, timings

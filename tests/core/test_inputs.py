"""The input spec: text syntax, errors, inference from layers, example inputs, exporter forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.errors import ExportError
from core.inputs import (
    Dim,
    InputSpec,
    example_inputs,
    example_sizes,
    format_specs,
    infer_spec,
    other_point,
    parse_specs,
    shapes_to_test,
    to_dynamic_axes,
    to_dynamic_shapes,
)
from tests.fixtures import export_models

SPEC = "x: float32[batch(1..64), 3, 224, 224]; mask: bool[batch, 16]"


def test_parse_the_documented_example():
    x, mask = parse_specs(SPEC)
    batch = Dim("batch", None, 1, 64)
    assert x == InputSpec("x", "float32", (batch, Dim(value=3), Dim(value=224), Dim(value=224)))
    assert mask == InputSpec("mask", "bool", (batch, Dim(value=16)))  # shares batch's range


def test_round_trip_aliases_new_lines_and_value_ranges():
    specs = parse_specs("ids: long[batch(..8),\n seq(2..)=5] in 0..99\nw: half[]")
    assert [s.dtype for s in specs] == ["int64", "float16"]
    assert specs[0].dims == (Dim("batch", None, None, 8), Dim("seq", 5, 2, None))
    assert specs[0].values == (0, 99) and specs[1].dims == ()
    assert parse_specs(format_specs(specs)) == specs


@pytest.mark.parametrize(("text", "words"), [
    ("x: flaot32[1]", "did you mean float32"),
    ("x float32[1]", "expected ':'"),
    ("x: float32[batch(1..64]", "expected ')'"),
    ("x: float32[batch(9..3)]", "from 9 down to 3"),
    ("x: float32[b(1..4)=9]", "outside its range"),
    ("x: float32[1]; x: float32[2]", "named twice"),
    ("x: float32[b(1..4)]; y: float32[b(1..5)]", "two different maximums"),
    ("x: float32[1] y: float32[2]", "expected ';'"),
    ("x: float32[1.5]", "whole number"),
    ("", "names no input"),
])
def test_bad_specs_name_the_problem_and_where(text, words):
    with pytest.raises(ExportError) as info:
        parse_specs(text)
    assert words in info.value.message
    assert "x: float32[batch(1..64)" in info.value.message  # how to write it
    assert info.value.details.startswith(text)  # the text with a caret under the spot


def test_example_inputs_shapes_dtypes_values_and_seed():
    specs = parse_specs("x: float32[batch(1..64), 3]; m: bool[batch, 4]; "
                        "ids: int64[batch, seq(1..8)] in 5..7")
    assert example_sizes(specs) == {"batch": 2, "seq": 3}  # distinct, never 0/1 by default
    inputs = example_inputs(specs, {"batch": 16})
    assert {k: tuple(v.shape) for k, v in inputs.items()} == {
        "x": (16, 3), "m": (16, 4), "ids": (16, 3)}
    assert inputs["m"].dtype == torch.bool and inputs["ids"].dtype == torch.int64
    assert inputs["ids"].min() >= 5 and inputs["ids"].max() <= 7
    assert torch.equal(example_inputs(specs, seed=3)["x"], example_inputs(specs, seed=3)["x"])
    assert not torch.equal(example_inputs(specs, seed=3)["x"], example_inputs(specs, seed=4)["x"])
    with pytest.raises(ExportError, match="outside its range"):
        example_inputs(specs, {"batch": 65})
    with pytest.raises(ExportError, match="no dim named 'height'"):
        example_inputs(specs, {"height": 2})


def test_shapes_to_test_cover_1_16_64_and_every_range_end():
    specs = parse_specs("x: float32[batch(1..64), seq(4..32), 8]")
    points = shapes_to_test(specs)
    base = example_sizes(specs)
    assert base == {"batch": 2, "seq": 4}
    assert {p["batch"] for p in points if p["seq"] == 4} == {1, 2, 16, 64}  # 2: seq's points
    assert {p["seq"] for p in points if p["batch"] == 2} == {4, 16, 32}
    assert all(sum(p[k] != base[k] for k in base) <= 1 for p in points)  # one dim moves at a time
    assert len(points) == len({tuple(sorted(p.items())) for p in points})
    assert shapes_to_test(parse_specs("x: float32[2, 3]")) == [{}]
    assert other_point(specs) == {"batch": 16, "seq": 16}


def test_exporter_forms_share_one_dim_object():
    specs = parse_specs(SPEC + "; s: float32[7]")
    shapes = to_dynamic_shapes(specs)
    assert shapes["x"][0] is shapes["mask"][0] and shapes["s"] is None
    assert (shapes["x"][0].min, shapes["x"][0].max) == (1, 64)
    assert to_dynamic_axes(specs) == {"x": {0: "batch"}, "mask": {0: "batch"}}
    assert to_dynamic_axes(parse_specs("x: float32[b(3..3)]")) == {}  # one size: static


class Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 4)

    def forward(self, tokens):
        return self.emb(tokens)


def test_infer_spec_from_the_first_layer():
    assert format_specs(infer_spec(export_models.mlp())) == "x: float32[batch(1..64), 8]"
    assert format_specs(infer_spec(export_models.cnn())) == \
        "x: float32[batch(1..64), 3, 224, 224]"
    assert format_specs(infer_spec(Embedder())) == \
        "tokens: int64[batch(1..64), seq(1..512)] in 0..49"
    assert format_specs(infer_spec(export_models.lstm())) == "x: float32[batch(1..64), 16, 8]"
    with pytest.raises(ExportError, match="takes 2 inputs"):
        infer_spec(export_models.two_input())
    with pytest.raises(ExportError, match="Could not guess"):
        infer_spec(nn.ReLU())

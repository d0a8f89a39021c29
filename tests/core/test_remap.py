"""core.diff.remap: suggestions (prefixes, segment renames, signatures), apply_remap, rule round trips."""

from __future__ import annotations

import re

import pytest

from core.diff.remap import (
    ADD,
    KEY,
    REPLACE,
    SEGMENTS,
    STRIP,
    RemapRule,
    apply_remap,
    rules_of,
    suggest_remap,
)
from core.errors import CheckpointError
from core.model import TensorInfo

LAYERS = [("embed.weight", (100, 16))] + [
    (f"layers.{i}.{part}", shape) for i in range(4) for part, shape in (
        ("attn.q.weight", (16, 16)), ("attn.k.weight", (16, 16)), ("attn.q.bias", (16,)),
        ("mlp.up.weight", (64, 16)), ("norm.weight", (16,)))] + [("head.weight", (10, 16))]


def infos(pairs, rename=lambda n: n, dtype="float32"):
    return {rename(n): TensorInfo(rename(n), tuple(s), dtype) for n, s in pairs}


def explained(a, b, suggestions):
    mapping = apply_remap(list(a), rules_of(suggestions, ambiguous=True))
    return sum(mapping[n] in b for n in a)


@pytest.mark.parametrize(("prefix_a", "prefix_b", "kind"), [
    ("module.", "", STRIP), ("_orig_mod.", "", STRIP), ("", "model.", ADD),
    ("model.backbone.", "encoder.", REPLACE), ("module._orig_mod.", "", STRIP)])
def test_prefix_changes(prefix_a, prefix_b, kind):
    a = infos(LAYERS, lambda n: prefix_a + n)
    b = infos(LAYERS, lambda n: prefix_b + n)
    [s] = suggest_remap(a, b)
    assert (s.rules[0].kind, s.rules[0].old or s.rules[0].new) == (kind, prefix_a or prefix_b)
    assert s.explains == len(LAYERS) and not s.ambiguous and s.breaks == 0
    assert s.examples[0] == (prefix_a + "embed.weight", prefix_b + "embed.weight")


def test_consistent_segment_rename_keeps_layer_numbers():
    a = infos(LAYERS)
    b = infos(LAYERS, lambda n: n.replace("layers.", "blocks.").replace(".attn.", ".attention."))
    suggestions = suggest_remap(a, b)
    first = suggestions[0].rules[0]
    assert (first.kind, first.old, first.new) == (SEGMENTS, "layers.{N}.attn", "blocks.{N}.attention")
    assert suggestions[0].explains == 12 and not any(s.ambiguous for s in suggestions)
    assert explained(a, b, suggestions) == len(a)
    assert first.apply("layers.11.attn.q.weight") == "blocks.11.attention.q.weight"
    assert first.apply("xlayers.1.attn.q") == "xlayers.1.attn.q"  # whole segments only


def test_prefix_then_segment_rename():
    a = infos(LAYERS, lambda n: "module." + n)
    b = infos(LAYERS, lambda n: n.replace(".attn.", ".self_attn."))
    suggestions = suggest_remap(a, b)
    assert explained(a, b, suggestions) == len(a)
    assert {s.rules[0].kind for s in suggestions} <= {STRIP, REPLACE, SEGMENTS}


def test_remaining_keys_matched_by_signature():
    a = infos(LAYERS)
    b = infos([(f"p{i}", s) for i, (_, s) in enumerate(LAYERS)])
    unique, positional = suggest_remap(a, b)
    assert not unique.ambiguous and unique.explains == 2  # embed [100,16], head [10,16]
    assert {r.old: r.new for r in unique.rules} == {"embed.weight": "p0", "head.weight": "p21"}
    assert positional.ambiguous and positional.explains == 20
    assert all(r.kind == KEY for r in positional.rules)
    assert explained(a, b, [unique, positional]) == len(a)
    assert rules_of([unique, positional]) == unique.rules  # ambiguous ones left out by default


def test_unrelated_keys_give_no_suggestions():
    a = infos(LAYERS)
    b = infos([(f"enc.blk{j}.w", (j + 3, 7)) for j in range(20)])
    assert suggest_remap(a, b) == []
    assert suggest_remap(a, a) == [] and suggest_remap({}, a) == []


def test_equally_good_readings_are_ambiguous():
    a = infos([("m.p", (2,)), ("m.q", (3,))])
    b = infos([("n.p", (2,)), ("n.q", (3,)), ("o.p", (2,)), ("o.q", (3,))])
    first = suggest_remap(a, b)[0]
    assert first.ambiguous and first.explains == 2


def test_apply_remap_refuses_collisions():
    with pytest.raises(CheckpointError, match="same name 'x'"):
        apply_remap(["a.x", "b.x"], [RemapRule(STRIP, "a."), RemapRule(STRIP, "b.")])


def test_key_rules_apply_in_order():
    rules = [RemapRule(KEY, "a", "b"), RemapRule(KEY, "b", "c"), RemapRule(KEY, "x", "y")]
    assert apply_remap(["a", "x", "z"], rules) == {"a": "c", "x": "y", "z": "z"}


@pytest.mark.parametrize("rule", [
    RemapRule(STRIP, "module."), RemapRule(ADD, "", "model."), RemapRule(REPLACE, "a.b.", "c."),
    RemapRule(SEGMENTS, "layers.{N}.attn", "blocks.{N}.attention"),
    RemapRule(SEGMENTS, "h.{N}.{N}", "g.{N}.x.{N}"), RemapRule(KEY, "fc.weight", "linear.w\\1")])
def test_rules_round_trip_and_match_their_regex(rule):
    assert RemapRule.from_dict(rule.to_dict()) == rule
    pattern, _, replacement = rule.regex().partition("=>")
    names = ["module.layers.3.attn.q", "a.b.c", "h.1.2.w", "fc.weight", "layers.10.attn", "x"]
    for name in names:
        assert re.compile(pattern).sub(replacement, name) == rule.apply(name), name


def test_bad_rules_are_refused():
    with pytest.raises(CheckpointError):
        RemapRule("swap")
    with pytest.raises(CheckpointError):
        RemapRule(SEGMENTS, "layers.{N}", "blocks")

"""`inspect --filter`: one matching rule (core.inspect.name_matcher) for the CLI and the app."""

from __future__ import annotations

import json

import pytest

from core.cli.main import EXIT_OK, main
from core.inspect import name_matcher

NAMES = ["bn.weight", "layer1.bn.bias", "layer1.conv.weight", "BN_extra.scale", "fc.weight"]


@pytest.mark.parametrize("text, expected", [
    ("*.bn.*", ["bn.weight", "layer1.bn.bias"]),  # the help's example; a leading '*.' may be empty
    ("bn", ["bn.weight", "layer1.bn.bias", "BN_extra.scale"]),  # substring, any case
    ("bn.*", ["bn.weight"]),  # a glob matches the whole name
    ("*.WEIGHT", ["bn.weight", "layer1.conv.weight", "fc.weight"]),
    ("layer?.*", ["layer1.bn.bias", "layer1.conv.weight"]),
    ("[bf]*", ["bn.weight", "BN_extra.scale", "fc.weight"]),
    ("nothing", []),
])
def test_the_rule(text: str, expected: list[str]) -> None:
    matches = name_matcher(text)
    assert matches is not None
    assert [n for n in NAMES if matches(n)] == expected


def test_an_empty_filter_is_no_filter() -> None:
    assert name_matcher("") is None and name_matcher("   ") is None


def _inspect(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["inspect", *argv])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("text", ["*.bn.*", "bn", "BN", "bn.*"])
def test_cli_filter_finds_the_batchnorm_tensors(files, text: str, capsys) -> None:
    code, out = _inspect(["--json", "--section", "model", "--filter", text, str(files["training"])],
                         capsys)
    assert code == EXIT_OK
    data = json.loads(out)
    assert {t["name"] for t in data["sections"][0]["tensors"]} == {
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert data["filter"] == text and data["unfiltered_tensors"] == 11


def test_cli_says_how_many_match(files, capsys) -> None:
    code, out = _inspect(["--filter", "*.bn.*", str(files["state_dict"])], capsys)
    assert code == EXIT_OK and "5 of 11 tensors match '*.bn.*'" in out
    assert "bn.running_var" in out and "fc.weight" not in out


def test_cli_says_when_nothing_matches(files, capsys) -> None:
    code, out = _inspect(["--filter", "*.nope.*", str(files["training"])], capsys)
    assert code == EXIT_OK
    assert "0 of 32 tensors match '*.nope.*'" in out
    assert "Section 'optimizer'" not in out  # sections without a match are left out

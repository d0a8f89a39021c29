"""`ckpt-studio diff` as a user runs it (through core.cli.diff's parser + core.cli's guard)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from core.cli.diff import add_parser
from core.cli.main import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, _guarded

MODEL = '''
from torch import nn
from tests.fixtures.models import TinyNet

def wider():
    net = TinyNet()
    net.fc = nn.Linear(4, 16)
    net.extra = nn.Linear(2, 2, bias=False)
    del net.conv.bias
    net.conv.bias = None
    return net
'''


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ckpt-studio")
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code = _guarded(args.run, args)
    out, err = capsys.readouterr()
    return code, out, err


def test_same_file_exits_zero_with_a_summary(files, capsys):
    code, out, err = run(["diff", str(files["state_dict"]), str(files["legacy"]), "--values"], capsys)
    assert code == EXIT_OK, err
    assert "11 same, 0 shape mismatch, 0 dtype mismatch, 0 only in A, 0 only in B." in out
    assert "Values: 11 identical" in out


def test_differences_exit_one_and_are_listed(files, capsys):
    code, out, _ = run(["diff", str(files["state_dict"]), str(files["safetensors"]), "--values"],
                       capsys)
    assert code == EXIT_FINDINGS
    assert "only in A" in out and "head.weight" in out  # tied: safetensors keeps one of the two
    assert "different" in out and "conv.weight" in out  # saved after an optimizer step
    assert "Values: 3 identical, 0 close, 7 different." in out


def test_json_output(files, capsys):
    code, out, _ = run(["diff", str(files["data_parallel"]), str(files["state_dict"]), "--json",
                        "--suggest-remap"], capsys)
    data = json.loads(out)
    assert code == EXIT_FINDINGS and data["totals"]["only_a"] == 11 and data["equal"] is False
    assert data["sections"][0]["suggestions"][0]["rules"][0] == {
        "kind": "strip_prefix", "old": "module.", "new": "", "text": "remove the prefix 'module.'"}


def test_suggest_and_apply_remap(files, tmp_path, capsys):
    code, out, _ = run(["diff", str(files["lightning"]), str(files["ema"]), "--suggest-remap"],
                       capsys)
    assert code == EXIT_FINDINGS and "remove the prefix 'model.'" in out
    dest = tmp_path / "fixed.safetensors"
    code, out, err = run(["diff", str(files["lightning"]), str(files["ema"]), "--values",
                          "--apply-remap", str(dest), "--json"], capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["written"]["verification"]["passed"] and len(data["written"]["renamed"]) == 11
    assert data["after"]["equal"] is True and data["after"]["value_totals"]["identical"] == 11
    assert torch.load(files["lightning"], weights_only=True)["state_dict"]["model.fc.bias"].equal(
        __import__("safetensors.torch").torch.load_file(dest)["fc.bias"])


def test_apply_remap_with_nothing_to_apply_is_an_error(files, tmp_path, capsys):
    dest = tmp_path / "x.safetensors"
    code, _, err = run(["diff", str(files["state_dict"]), str(files["dtypes"]), "--apply-remap",
                        str(dest)], capsys)
    assert code == EXIT_ERROR and "no remap to apply" in err and not dest.exists()


def test_against_a_model(files, tmp_path, capsys):
    source = tmp_path / "arch.py"
    source.write_text(MODEL)
    code, out, err = run(["diff", str(files["state_dict"]), "--model", f"{source}:wider",
                          "--json"], capsys)
    assert code == EXIT_FINDINGS, err
    report = json.loads(out)["load_state_dict"]
    assert report == {"missing_keys": ["extra.weight"], "unexpected_keys": ["conv.bias"],
                      "size_mismatch": ["fc.weight", "fc.bias"]}
    code, out, _ = run(["diff", str(files["state_dict"]), "--model", f"{source}:wider"], capsys)
    assert "unexpected" in out and "size mismatch" in out and "would fail" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["diff", "A_MISSING"], "Give a second checkpoint B"),
    (["diff", "OK", "B_MISSING.pt"], "File B ('B_MISSING.pt')"),
    (["diff", "A_MISSING.pt", "OK"], "File A ('A_MISSING.pt')"),
    (["diff", "OK", "--model", "net.py"], "Name the function or class that builds the model"),
    (["diff", "OK", "OK", "--model", "m:f"], "not both"),
])
def test_bad_input_is_one_plain_sentence(files, capsys, argv, message):
    argv = [str(files["state_dict"]) if a == "OK" else a for a in argv]
    code, out, err = run(argv, capsys)
    assert code == EXIT_ERROR and message in err and "Traceback" not in err

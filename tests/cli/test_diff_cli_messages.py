"""What `ckpt-studio diff` tells without being asked: renames that explain the keys, headers that
agree with the rows, cosine where it is undefined."""

from __future__ import annotations

import json

import torch

from core.cli.main import EXIT_FINDINGS, main


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_a_prefix_rename_is_suggested_without_asking(files, capsys) -> None:
    code, out = run(["diff", str(files["data_parallel"]), str(files["state_dict"])], capsys)
    assert code == EXIT_FINDINGS
    assert "remove the prefix 'module.': explains 11 key(s)" in out
    assert "They look like different models" not in out
    assert "The remap suggestions explain 11 key(s)." in out


def test_weak_suggestions_wait_for_suggest_remap(tmp_path, capsys) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    shared = {f"blocks.{i}.w": torch.zeros(2) for i in range(8)}
    torch.save({**shared, "old.head.w": torch.zeros(3), "old.head.b": torch.zeros(4)}, a)
    torch.save({**shared, "new.head.w": torch.zeros(3), "new.head.b": torch.zeros(4),
                "x.a": torch.zeros(5), "y.b": torch.zeros(6), "z.c": torch.zeros(7)}, b)
    asked = json.loads(run(["diff", str(a), str(b), "--json", "--suggest-remap"], capsys)[1])
    unasked = json.loads(run(["diff", str(a), str(b), "--json"], capsys)[1])
    explains = [s["explains"] for s in asked["sections"][0]["suggestions"]]
    assert explains and max(explains) == 2  # 'old.' -> 'new.': both of A's unmatched keys
    assert [s["explains"] for s in unasked["sections"][0]["suggestions"]] == [2]
    c = tmp_path / "c.pt"
    torch.save({**shared, "old.head.w": torch.zeros(3), "p": torch.zeros(1), "q": torch.zeros(1),
                "r": torch.zeros(1), "s": torch.zeros(1)}, c)
    weak = json.loads(run(["diff", str(c), str(b), "--json"], capsys)[1])
    assert weak["sections"][0]["suggestions"] == []  # explains too few of A's 5 unmatched keys


def test_value_header_counts_what_the_rows_show(tmp_path, capsys) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.ones(4), "v": torch.ones(3), "same": torch.ones(2)}, a)
    torch.save({"w": torch.ones(4) * 2, "v": torch.ones(3) * 3, "same": torch.ones(2)}, b)
    code, out = run(["diff", str(a), str(b), "--values"], capsys)
    assert code == EXIT_FINDINGS
    header = next(line for line in out.splitlines() if line.startswith("A 'model' vs B 'model'"))
    assert header.endswith(": 2 different, 1 identical")  # in the order of the rows
    assert "same" not in header


def test_cosine_with_an_all_zero_side_is_undefined(tmp_path, capsys) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"zeros": torch.zeros(4), "ones": torch.ones(3)}, a)
    torch.save({"zeros": torch.ones(4), "ones": torch.ones(3) * 2}, b)
    _, out = run(["diff", str(a), str(b), "--values"], capsys)
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert rows["zeros"].split("│")[-1].strip() == "undefined"
    assert rows["ones"].split("│")[-1].strip() == "1.000000"

"""`check parity|latency` on a terminal: rich tables, not raw Markdown; report names checked first."""

from __future__ import annotations

import sys

import pytest

from core.cli.main import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, main
from tests.fixtures.check_models import CNN_SPEC, cnn, export_onnx, perturb_initializer


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("check_terminal")
    good = export_onnx(cnn(), root / "cnn.onnx", ["y"])
    return {"good": good, "bad": perturb_initializer(good, root / "bad.onnx", "head.bias", 0, 0.25)}


def as_terminal(monkeypatch):
    """The test's stdout (capsys replaces it when the test body starts) as an 80-column terminal."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "dumb")  # no colour codes in what the test reads


def test_parity_on_a_terminal_is_tables(cnn_files, tmp_path, monkeypatch, capsys):
    as_terminal(monkeypatch)
    code = main(["check", "parity", str(cnn_files["good"]), str(cnn_files["bad"]), "--shapes",
                 "batch=1", "--save-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == EXIT_FINDINGS
    assert "# Parity" not in out and "|---|" not in out and "| output |" not in out
    assert "Parity: FAIL" in out and "━" in out  # a rich table rule
    row = next(line for line in out.splitlines() if line.lstrip().startswith("y "))
    assert "0.25" in row and row.rstrip().endswith("FAIL")
    assert max(len(line) for line in out.splitlines()) <= 80


def test_latency_on_a_terminal_is_a_table_that_fits(cnn_files, files, monkeypatch, capsys):
    as_terminal(monkeypatch)
    code = main(["check", "latency", str(cnn_files["good"]), "tests.fixtures.models:TinyNet",
                 "--weights", str(files["state_dict"]), "--input", CNN_SPEC, "--batches", "2",
                 "--runs", "3", "--warmup", "0"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "| runner |" not in out and "# Latency" not in out
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("runner"))
    for column in ("p50 ms", "samples/s", "extra RSS"):
        assert column in header  # every kept column shown, none squeezed away
    assert max(len(line) for line in lines) <= 80


def test_piped_parity_stays_markdown(cnn_files, tmp_path, capsys):
    main(["check", "parity", str(cnn_files["good"]), str(cnn_files["bad"]), "--shapes", "batch=1",
          "--save-dir", str(tmp_path)])
    assert capsys.readouterr().out.startswith("# Parity: FAIL")


@pytest.mark.parametrize("name", ["r.pdf", "report", "r.txt", "r.json"])
def test_an_unknown_report_extension_is_refused_before_running(cnn_files, tmp_path, name, capsys):
    report = tmp_path / name
    code = main(["check", "latency", str(cnn_files["good"]), "--input", CNN_SPEC, "--batches", "1",
                 "--runs", "1", "--report", str(report)])
    out, err = capsys.readouterr()
    assert code == EXIT_ERROR and out == "" and not report.exists()
    assert "--report writes an HTML (.html) or Markdown (.md) file" in err and name in err


@pytest.mark.parametrize("name, start", [("r.HTML", "<!DOCTYPE html>"), ("r.md", "# Latency")])
def test_known_report_extensions_are_written(cnn_files, tmp_path, name, start, capsys):
    report = tmp_path / name
    code = main(["check", "latency", str(cnn_files["good"]), "--input", CNN_SPEC, "--batches", "1",
                 "--runs", "1", "--warmup", "0", "--report", str(report)])
    assert code == EXIT_OK and report.read_text().startswith(start)

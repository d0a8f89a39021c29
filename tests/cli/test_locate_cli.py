"""`ckpt-studio check parity A B --locate`: JSON, Markdown and HTML name the first diverging module."""

from __future__ import annotations

import json

import pytest

from core.cli.main import EXIT_FINDINGS, EXIT_OK
from tests.cli.test_check_cli import run
from tests.core.test_locate import DAMAGED, SPEC, export_artefacts

ARCH = "tests.core.test_locate:deep_mlp"


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    return export_artefacts(tmp_path_factory.mktemp("locate_cli"))


def test_locate_json_names_the_damaged_module_and_exits_1(artefacts, tmp_path, capsys):
    report = tmp_path / "report.html"
    code, out, err = run(["check", "parity", ARCH, str(artefacts["damaged_onnx"]), "--trust",
                          "--input", SPEC, "--locate", "--json", "--save-dir", str(tmp_path),
                          "--report", str(report)], capsys)
    assert code == EXIT_FINDINGS, err
    data = json.loads(out)
    assert data["passed"] is False
    first = data["first_divergence"]
    assert first["module"] == DAMAGED and first["op"] == "Gemm" and first["max_abs"] > 0
    assert {"max_rel", "depth", "exceeds"} <= set(first)
    rows = data["locate"]["rows"]
    assert [r["depth"] for r in rows] == list(range(1, len(rows) + 1))
    assert data["locate"]["input_shapes"] == {"x": [1, 16]}  # the first failing shape
    page = report.read_text()
    assert 'class="depth-plot"' in page and DAMAGED in page
    saved = data["cases"][0]["saved"]  # a saved failing case locates on exactly those inputs
    code, out, err = run(["check", "parity", ARCH, str(artefacts["damaged_onnx"]), "--trust",
                          "--inputs-npz", saved, "--locate", "--json", "--save-dir",
                          str(tmp_path / "again")], capsys)
    again = json.loads(out)
    assert code == EXIT_FINDINGS and again["first_divergence"]["module"] == DAMAGED
    assert again["first_divergence"]["max_abs"] == pytest.approx(first["max_abs"])


def test_locate_markdown_table_on_a_torchscript_artefact(artefacts, tmp_path, capsys):
    code, out, err = run(["check", "parity", ARCH, str(artefacts["damaged_ts"]), "--trust",
                          "--input", SPEC, "--shapes", "batch=2", "--locate",
                          "--save-dir", str(tmp_path)], capsys)
    assert code == EXIT_FINDINGS, err
    assert "## Where it diverges" in out
    assert f"The first module out of tolerance is '{DAMAGED}' (Linear, op aten::linear)" in out
    assert "Why: FAIL under the float profile" in out


def test_locate_on_a_passing_pair_exits_0_without_divergence(artefacts, tmp_path, capsys):
    code, out, err = run(["check", "parity", ARCH, str(artefacts["pt2"]), "--trust", "--input",
                          SPEC, "--shapes", "batch=2", "--locate", "--json"], capsys)
    assert code == EXIT_OK, err
    data = json.loads(out)
    assert data["first_divergence"] is None and len(data["locate"]["rows"]) > 10

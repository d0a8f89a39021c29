"""core.checks.verdicts: task-level agreement beside raw tolerances, and the int8 profile."""

from __future__ import annotations

import numpy as np
import pytest

from core.checks.locate import locate
from core.checks.parity import check_parity
from core.checks.verdicts import PROFILES, TaskTally, target_profile
from core.runtime import build_runner
from core.runtime.eager import EagerRunner
from tests.core.test_locate import DAMAGED, SPEC, deep_mlp, export_artefacts


def test_top1_and_top5_agreement_are_counted_per_row():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(10, 8)).astype(np.float32)
    got = ref.copy()
    for row in (2, 7):  # make the runner-up win in two rows
        order = np.argsort(-ref[row])
        got[row, order[1]] = ref[row, order[0]] + 1.0
    tally = TaskTally()
    tally.add("logits", ref, got)
    (verdict,) = tally.verdicts(PROFILES["float"])
    assert verdict["kind"] == "classes" and verdict["rows"] == 10
    assert verdict["top1_agreement"] == pytest.approx(0.8) and verdict["passed"] is False
    assert verdict["top5_agreement"] == pytest.approx(1.0)  # the same five classes lead
    assert "8 of 10 rows" in verdict["reason"] and verdict["decides"] is False


def test_embeddings_get_a_cosine_distribution():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3, 4, 32)).astype(np.float32)
    tally = TaskTally()
    tally.add("sentence_embedding", ref, ref * 2.0)  # scaled: same direction
    tally.add("sentence_embedding", ref, -ref)  # opposite: cosine -1
    (verdict,) = tally.verdicts(PROFILES["int8"])
    assert verdict["kind"] == "embedding" and verdict["rows"] == 24
    assert verdict["cosine_min"] == pytest.approx(-1.0) and verdict["cosine_p5"] == pytest.approx(-1.0)
    assert verdict["cosine_median"] == pytest.approx(0.0, abs=1e-6)  # half +1, half -1
    assert verdict["passed"] is False and verdict["decides"] is True


def test_outputs_without_classes_get_no_verdict():
    tally = TaskTally()
    tally.add("score", np.ones((4, 1), np.float32), np.ones((4, 1), np.float32))
    tally.add("ids", np.ones((4, 3), np.int64), np.ones((4, 3), np.int64))
    assert tally.verdicts(PROFILES["float"]) == []


def test_an_int8_model_is_judged_by_the_int8_profile(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    artefacts = export_artefacts(tmp_path)
    quantized = tmp_path / "int8.onnx"
    quantize_dynamic(str(artefacts["onnx"]), str(quantized), weight_type=QuantType.QInt8)
    eager, candidate = EagerRunner(deep_mlp()), build_runner(quantized)
    assert target_profile(eager, build_runner(artefacts["onnx"])).name == "float"
    assert target_profile(eager, candidate).name == "int8"
    result = check_parity(eager, candidate, SPEC, points=[{"batch": 4}])
    data = result.to_dict()
    assert data["settings"]["profile"]["name"] == "int8" and data["settings"]["atol"] == 0.1
    (verdict,) = data["verdicts"]
    assert verdict["decides"] is True and verdict["rows"] == 4
    assert data["reason"].startswith(("PASS under the int8 profile", "FAIL under the int8 profile"))
    assert result.passed == (all(c["passed"] for c in data["cases"]) and verdict["passed"])
    assert locate(eager, candidate, SPEC).first_divergence is None  # within the int8 profile
    damaged = tmp_path / "damaged_int8.onnx"
    quantize_dynamic(str(artefacts["damaged_onnx"]), str(damaged), weight_type=QuantType.QInt8)
    loc = locate(eager, build_runner(damaged), SPEC, point={"batch": 4})
    assert loc.atol == 0.1 and loc.approximate_mapping  # quantized nodes lost their metadata
    assert loc.first_divergence.module == DAMAGED

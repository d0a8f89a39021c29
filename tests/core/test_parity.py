"""Parity: two runners over several shapes; failures name the output, the number and save a case."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.checks import check_parity, load_cases
from core.checks.compare import compare_output, default_tolerance
from core.errors import Cancelled, CheckFailed
from core.progress import Recorder
from core.report import to_json
from core.runtime import Runner, build_runner
from core.runtime.eager import EagerRunner
from tests.fixtures.check_models import CNN_SPEC, cnn, export_onnx, perturb_initializer, two_heads


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    heads = export_onnx(two_heads(), root / "heads.onnx", ["logits", "aux"])
    return {"cnn": export_onnx(cnn(), root / "cnn.onnx", ["y"]), "heads": heads,
            "heads_bad": perturb_initializer(heads, root / "heads_bad.onnx", "aux.bias", 1, 0.5)}


class Fixed(Runner):
    """Returns the given outputs whatever the input (for NaN and mismatch cases)."""

    backend = "fixed"

    def __init__(self, outputs):
        super().__init__("fixed", ["x"], list(outputs))
        self.outputs = outputs

    def _run_impl(self, feed):
        return dict(self.outputs)


def test_torchscript_vs_onnx_of_the_fixture_passes(files):
    result = check_parity(build_runner(files["torchscript"], trust=True), build_runner(files["onnx"]))
    assert result and result.passed  # spec taken from the ONNX model's inputs: [1, 3, 8, 8]
    (case,) = result.cases
    assert case.input_shapes == {"x": [1, 3, 8, 8]}
    (row,) = case.outputs
    assert row.max_abs_diff < 1e-5 and row.cosine_similarity > 0.99999 and row.outside_count == 0
    assert "matched by position" in result.notes[0]  # 'output' vs the exporter's numeric name
    json.loads(to_json(result))


def test_eager_vs_onnx_passes_at_batch_1_16_64(onnx_files):
    result = check_parity(EagerRunner(cnn()), build_runner(onnx_files["cnn"]), CNN_SPEC)
    assert result.passed, result.failures()
    assert [c.input_shapes["x"][0] for c in result.cases] == [1, 16, 64]
    assert [c.sizes for c in result.cases] == [{"batch": 1}, {"batch": 16}, {"batch": 64}]
    assert all(o.atol == 1e-4 and o.rtol == 1e-4 for c in result.cases for o in c.outputs)


def test_perturbed_export_fails_on_the_right_output_with_the_right_difference(onnx_files, tmp_path):
    reference = EagerRunner(two_heads(), output_names=["logits", "aux"])
    result = check_parity(reference, build_runner(onnx_files["heads_bad"]), CNN_SPEC,
                          points=[{"batch": 2}, {"batch": 16}], save_dir=tmp_path)
    assert not result
    for case in result.cases:
        logits, aux = case.outputs
        assert logits.name == "logits" and logits.passed
        assert aux.name == "aux" and not aux.passed
        assert aux.max_abs_diff == pytest.approx(0.5, abs=1e-5)  # the bias moved by 0.5
        assert aux.worst_index[1] == 1 and aux.outside_percent == pytest.approx(100 / 3)
        assert "Output 'aux'" in aux.message and "0.5" in aux.message
        with np.load(case.saved) as saved:
            assert {"input.x", "reference.aux", "candidate.aux", "meta"} <= set(saved.files)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = check_parity(reference, build_runner(onnx_files["heads_bad"]),
                         cases=load_cases([result.cases[0].saved]))
    assert not again and again.cases[0].outputs[1].max_abs_diff == pytest.approx(0.5, abs=1e-5)


def test_multi_output_model_passes_and_says_how_outputs_were_paired(onnx_files):
    result = check_parity(EagerRunner(two_heads()), build_runner(onnx_files["heads"]), CNN_SPEC,
                          points=[{"batch": 3}])
    assert result.passed
    assert [(o.name, o.candidate_name) for o in result.cases[0].outputs] == [
        ("output_0", "logits"), ("output_1", "aux")]
    assert any("matched by position" in n for n in result.notes)


def test_output_count_shape_and_dtype_mismatches_fail_clearly():
    x = np.zeros((1, 4), np.float32)
    two = Fixed({"a": x, "b": x})
    result = check_parity(two, Fixed({"a": x}), "x: float32[1, 4]")
    assert not result
    assert result.cases[0].error == "The reference gives 2 outputs (a, b) but the candidate gives 1 (a)."
    result = check_parity(Fixed({"a": np.zeros((1, 10))}), Fixed({"a": np.zeros((1, 9))}),
                          "x: float32[1, 4]")
    assert result.failures() == ["x [1, 4]: Output 'a' has the shape [1, 10] in the reference but "
                                 "[1, 9] in the candidate."]
    result = check_parity(Fixed({"a": x}), Fixed({"a": x.astype(np.int64)}), "x: float32[1, 4]")
    assert "is float32 in the reference but int64 in the candidate" in result.failures()[0]


def test_nan_is_reported_as_nan_not_as_a_huge_number():
    ref = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = ref.copy()
    got[0, 1] = np.nan
    got[1, 2] = np.inf
    result = check_parity(Fixed({"y": ref}), Fixed({"y": got}), "x: float32[1, 4]")
    (row,) = result.cases[0].outputs
    assert not row.passed and row.nonfinite_candidate == 2 and row.nonfinite_mismatch == 2
    assert row.max_abs_diff == 0.0 and "NaN or infinite at 2 positions" in row.message
    both = ref.copy()
    both[0, 0] = np.nan
    same = check_parity(Fixed({"y": both}), Fixed({"y": both.copy()}), "x: float32[1, 4]")
    assert same.passed and same.cases[0].outputs[0].nonfinite_reference == 1


def test_shape_outside_the_models_range_fails_that_shape_only(files):
    result = check_parity(build_runner(files["torchscript"], trust=True), build_runner(files["onnx"]),
                          "x: float32[batch(1..16), 3, 8, 8]")
    assert [c.passed for c in result.cases] == [True, False]
    error = result.cases[1].error
    assert error.startswith("Running onnxruntime (model.onnx) failed on x [16, 3, 8, 8]: ")
    assert "invalid dimensions" in error and result.cases[1].saved is None  # no save_dir given


def test_cancel_raises_and_leaves_no_file(onnx_files, tmp_path):
    reference = EagerRunner(two_heads(), output_names=["logits", "aux"])
    recorder = Recorder(cancel_after=4)  # after the first (failing) shape is done
    with pytest.raises(Cancelled):
        check_parity(reference, build_runner(onnx_files["heads_bad"]), CNN_SPEC,
                     save_dir=tmp_path, progress=recorder)
    assert list(tmp_path.iterdir()) == []
    recorder = Recorder()
    check_parity(reference, reference, CNN_SPEC, points=[{"batch": 1}, {"batch": 2}],
                 progress=recorder)
    assert len(recorder.updates) == 5 and recorder.updates[-1][:2] == (4, 4)


def test_bad_inputs_are_check_failures(onnx_files, tmp_path):
    runner = build_runner(onnx_files["cnn"])
    with pytest.raises(CheckFailed, match="does not exist"):
        load_cases([tmp_path / "missing.npz"])
    with pytest.raises(CheckFailed, match="input spec is not valid"):
        check_parity(runner, runner, "x: float32[batch(1..64), 3, 8")
    with pytest.raises(CheckFailed, match="takes 1"):
        check_parity(runner, runner, "x: float32[2, 3, 8, 8]; y: float32[2]")
    with pytest.raises(CheckFailed, match="outside its range"):
        check_parity(runner, runner, CNN_SPEC, points=[{"batch": 65}])


def test_renamed_inputs_are_matched_by_position(onnx_files):
    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = cnn()

        def forward(self, image):
            return self.net(image)

    result = check_parity(EagerRunner(Named()), build_runner(onnx_files["cnn"]), CNN_SPEC,
                          points=[{"batch": 2}])
    assert result.passed
    assert any("(image) are named differently from the given ones (x)" in n for n in result.notes)


def test_tolerances_by_dtype_and_per_output():
    assert default_tolerance("float32") == (1e-4, 1e-4)
    assert default_tolerance("float32", "float16") == (1e-2, 1e-2)
    assert default_tolerance("bfloat16") == (2e-2, 2e-2)
    assert default_tolerance("int64") == (0.0, 0.0)
    ref = np.ones(4, np.float32)
    assert compare_output("y", ref, ref + 5e-3, got_dtype="float16").passed
    assert not compare_output("y", ref, ref + 5e-3).passed
    ints = compare_output("i", np.arange(3), np.array([0, 1, 3]))
    assert not ints.passed and ints.outside_count == 1
    row = compare_output("y", np.array([1.0, -1.0]), np.array([-1.0, 1.0]))
    assert row.cosine_similarity == pytest.approx(-1.0) and row.max_rel_diff == pytest.approx(2.0)
    result = check_parity(Fixed({"y": ref}), Fixed({"y": ref + 0.05}), "x: float32[1, 4]",
                          tolerances={"y": (0.1, 0.0)})
    assert result.passed and result.settings["tolerances"] == {"y": (0.1, 0.0)}


def test_bfloat16_model_uses_bfloat16_inputs_and_tolerance():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).bfloat16()
    result = check_parity(EagerRunner(model), EagerRunner(model), "x: bfloat16[batch(1..4), 4]")
    assert result.passed, result.failures()
    row = result.cases[0].outputs[0]
    assert row.reference_dtype == "bfloat16" and (row.atol, row.rtol) == (2e-2, 2e-2)

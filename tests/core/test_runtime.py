"""Runners: one interface over eager, TorchScript, .pt2, onnxruntime (and torch.compile)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from core.errors import CheckFailed
from core.runtime import Runner, build_runner
from core.runtime.eager import EagerRunner
from core.runtime.onnxruntime import choose_providers

X = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)


def expected(files) -> np.ndarray:
    with torch.no_grad():
        return files.model(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("key, backend", [("torchscript", "torchscript"), ("pt2", "pt2"),
                                          ("onnx", "onnxruntime")])
def test_every_artefact_runs_like_the_model(files, key, backend):
    runner = build_runner(files[key], trust=True)
    assert isinstance(runner, Runner) and runner.backend == backend
    assert runner.input_names == ["x"] and runner.device.lower().startswith("cpu")
    assert runner.load_seconds > 0
    out = runner.run({"x": X})
    assert len(out) == 1 and runner.output_names == list(out)
    np.testing.assert_allclose(next(iter(out.values())), expected(files), atol=1e-5)
    info = runner.info()
    assert info["backend"] == backend and info["source"] == str(files[key])


@pytest.mark.parametrize("key", ["torchscript", "pt2"])
def test_programs_need_trust(files, key):
    with pytest.raises(CheckFailed, match="--trust") as err:
        build_runner(files[key])
    assert "\n" not in err.value.message


def test_architecture_plus_checkpoint_is_an_eager_runner(files):
    from tests.fixtures.models import tiny_model

    runner = build_runner("tests.fixtures.models:TinyNet", checkpoint=files["state_dict"])
    assert runner.backend == "eager" and runner.input_names == ["x"]
    with torch.no_grad():  # state_dict.pt holds the weights before the fixture's training step
        want = tiny_model()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(runner.run({"x": X})["output"], want, atol=1e-6)


def test_weights_only_file_and_missing_file_are_plain_errors(files, tmp_path):
    with pytest.raises(CheckFailed, match="weights only"):
        build_runner(files["state_dict"], trust=True)
    with pytest.raises(CheckFailed, match="does not exist") as err:
        build_runner(tmp_path / "nope.onnx")
    assert err.value.message.count(".") >= 1 and "\n" not in err.value.message


def test_an_artefact_that_fails_to_load_is_a_check_failure(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not a model" * 10)
    with pytest.raises(CheckFailed) as err:
        build_runner(bad)
    assert "\n" not in err.value.message


def test_wrong_input_name_and_rejected_shape_are_one_sentence(files):
    runner = build_runner(files["onnx"])
    with pytest.raises(CheckFailed) as err:
        runner.run({"y": X})
    assert err.value.message == ("The model run by onnxruntime (model.onnx) has no input named "
                                 "'y'; its inputs are: x.")
    with pytest.raises(CheckFailed) as err:
        runner.run({})
    assert "needs the input 'x'" in err.value.message
    with pytest.raises(CheckFailed) as err:
        runner.run({"x": np.zeros((2, 3, 8, 8), np.float32)})  # exported at batch 1
    message = err.value.message
    assert message.startswith("Running onnxruntime (model.onnx) failed on x [2, 3, 8, 8]: ")
    assert "invalid dimensions" in message and "\n" not in message and "ONNXRuntimeError" not in message
    assert err.value.details


def test_eager_shape_error_is_a_check_failure(files):
    runner = EagerRunner(files.model)
    with pytest.raises(CheckFailed, match=r"^Running eager failed on x \[1, 5, 8, 8\]: "):
        runner.run({"x": np.zeros((1, 5, 8, 8), np.float32)})


def test_onnxruntime_casts_within_a_kind(files):
    runner = build_runner(files["onnx"])
    out = runner.run({"x": X.astype(np.float64)})
    np.testing.assert_allclose(next(iter(out.values())), expected(files), atol=1e-5)


def test_provider_choice():
    assert choose_providers("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == \
        "CUDAExecutionProvider"
    with pytest.raises(CheckFailed, match="cannot use CUDA"):
        choose_providers("cuda", ["CPUExecutionProvider"])


def test_onnxruntime_threads_are_recorded(files):
    runner = build_runner(files["onnx"], threads=1)
    assert runner.threads == 1 and runner.session.get_session_options().intra_op_num_threads == 1


def test_multi_output_and_bfloat16_outputs():
    class Two(torch.nn.Module):
        def forward(self, x):
            return {"a": x * 2, "b": (x.bfloat16(), x.sum())}

    runner = EagerRunner(Two())
    out = runner.run({"x": np.ones((2, 2), np.float32)})
    assert list(out) == ["output_0", "output_1", "output_2"]
    assert out["output_1"].dtype == np.float32 and runner.output_dtypes == {"output_1": "bfloat16"}


def test_compiled_runner_matches_eager(files):
    from core.runtime.compiled import CompiledRunner

    runner = CompiledRunner(files.model, compile_backend="eager")
    np.testing.assert_allclose(runner.run({"x": X})["output"], expected(files), atol=1e-5)
    assert runner.info()["compile_backend"] == "eager"


@pytest.mark.parametrize("frozen, compilers, words", [
    (True, ["g++"], "installed app carries no C++ compiler"),
    (False, [], "no C++ compiler (g++ or clang++) was found"),
])
def test_compile_without_a_toolchain_says_so(files, monkeypatch, frozen, compilers, words):
    """The frozen app (or a machine without g++) refuses --compile in a sentence, before torch
    fails deep inside inductor on the first run."""
    import shutil

    from core.runtime import compiled

    monkeypatch.setattr(sys, "frozen", frozen, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name in compilers else None)
    with pytest.raises(CheckFailed) as caught:
        compiled.CompiledRunner(files.model)
    assert words in caught.value.message and "without compiling" in caught.value.message

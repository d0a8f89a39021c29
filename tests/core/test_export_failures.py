"""Export when things go wrong: control flow, dim ranges the model can't take, the legacy fallback,
train mode, bad specs and options, failures and cancels that must leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from core.errors import Cancelled, ExportError
from core.export import ExportOptions, export
from core.export import common as export_common
from core.export import onnx as onnx_target
from core.inputs import example_inputs, parse_specs
from core.progress import Recorder
from tests.fixtures import export_models


def specs_of(name: str):
    return parse_specs(export_models.SPECS[name])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_value_dependent_control_flow(tmp_path):
    """torch.export refuses it: ONNX falls back to the legacy exporter, .pt2 fails plainly,
    and the trace warning fires."""
    results = export(export_models.gated(), specs_of("gated"), ["onnx", "torchscript", "pt2"],
                     tmp_path, ExportOptions(keep_going=True))
    onnx_result, ts_result, pt2_result = results
    assert onnx_result.ok and onnx_result.exporter == "legacy"
    assert "GuardOnDataDependentSymNode" in onnx_result.fallback_reason
    assert any("legacy TorchScript-based exporter was used" in w for w in onnx_result.warnings)
    assert any("recorded only the example input's path" in w and "export_models.py" in w
               for w in onnx_result.warnings)
    assert ts_result.ok and any("Tracing recorded only" in w for w in ts_result.warnings)
    assert not pt2_result.ok and pt2_result.path is None
    assert "control flow that depends on tensor values" in pt2_result.error["message"]
    assert "GuardOnDataDependentSymNode" in pt2_result.error["details"]
    assert leftovers(tmp_path) == ["model.onnx", "model.torchscript.pt"]


def test_script_mode_keeps_both_branches(tmp_path):
    model = export_models.gated()
    (result,) = export(model, specs_of("gated"), ["torchscript"], tmp_path,
                       ExportOptions(torchscript_mode="script"))
    assert result.exporter == "script" and result.warnings == []
    scripted = torch.jit.load(result.path)
    x = torch.randn(4, 8)
    with torch.no_grad():
        for sign in (1, -1):  # both branches of `if h.sum() > 0`
            big = sign * 100 * x.abs() * torch.sign(model.fc.weight.sum(0))
            assert torch.allclose(scripted(big), model(big), atol=1e-5)


def test_trace_frozen_on_the_batch_size_is_caught_at_a_second_shape(tmp_path):
    (result,) = export(export_models.batch_branch(), specs_of("batch_branch"), ["torchscript"],
                       tmp_path)
    assert result.ok  # right at the example input...
    frozen = [w for w in result.warnings if "at another input shape (x [16, 8])" in w]
    assert frozen and "froze control flow" in frozen[0]  # ...but not at batch 16


@pytest.mark.parametrize("target", ["pt2", "onnx"])
def test_a_dim_range_the_model_cannot_take(tmp_path, target):
    with pytest.raises(ExportError) as info:
        export(export_models.batch_branch(), specs_of("batch_branch"), [target], tmp_path)
    assert "does not accept every size of 'batch'" in info.value.message
    assert "Dim('batch', max=4)" in info.value.message  # torch.export's suggestion
    assert "Constraints violated" in info.value.details
    assert leftovers(tmp_path) == []  # and no quiet legacy ONNX export with a wrong range


def test_narrowed_range_exports(tmp_path):
    specs = parse_specs("x: float32[batch(1..4), 8]")
    (result,) = export(export_models.batch_branch(), specs, ["pt2"], tmp_path)
    program = torch.export.load(result.path).module()
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.allclose(program(x), export_models.batch_branch()(x), atol=1e-5)


def test_lstm_sequence_length_is_not_dynamic(tmp_path):
    specs = parse_specs("x: float32[batch(1..64), seq(2..32), 8]")
    with pytest.raises(ExportError, match="every size of 'seq'.*seq = "):
        export(export_models.lstm(), specs, ["pt2"], tmp_path)


def test_forced_legacy_exporter_keeps_the_dynamic_batch_through_optimisation(tmp_path):
    import onnxruntime as ort

    model = export_models.mlp()
    (result,) = export(model, specs_of("mlp"), ["onnx"], tmp_path,
                       ExportOptions(onnx_exporter="legacy", opset=17, ort_optimize=True))
    assert leftovers(tmp_path) == ["model.onnx"]
    assert result.exporter == "legacy" and result.opset == 17 and result.warnings == []
    graph = onnx.load(result.path).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    for batch in (1, 16, 64):
        x = example_inputs(specs_of("mlp"), {"batch": batch})["x"]
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - expected).max() <= 1e-5


def test_train_mode_is_warned_about(tmp_path):
    (result,) = export(export_models.cnn().train(), specs_of("cnn"), ["torchscript"], tmp_path)
    assert any("training mode (BatchNorm2d" in w and "model.eval()" in w for w in result.warnings)


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    def differs(*args, **kwargs):
        raise ExportError("The ONNX model gives different results from the model.")

    monkeypatch.setattr(onnx_target, "check_close", differs)
    with pytest.raises(ExportError, match="different results"):
        export(export_models.mlp(), specs_of("mlp"), ["onnx"], tmp_path)
    assert leftovers(tmp_path) == []


def test_cancel_leaves_nothing(tmp_path):
    progress = Recorder(cancel_after=2)  # during the first target's first stage
    with pytest.raises(Cancelled):
        export(export_models.mlp(), specs_of("mlp"), ["torchscript", "pt2"], tmp_path,
               progress=progress)
    assert leftovers(tmp_path) == []


def test_cancel_after_a_finished_target_leaves_nothing(tmp_path):
    """The first artefact is complete and verified when the cancel comes: an interrupted run still
    leaves nothing (artefacts move into place only when the run ends)."""
    texts: list[str] = []

    class CancelAfterFirstTarget(Recorder):
        def update(self, done: int, total: int, text: str = "") -> None:
            texts.append(text)
            if text == "torchscript done":
                self.cancel()

    with pytest.raises(Cancelled):
        export(export_models.mlp(), specs_of("mlp"), ["torchscript", "pt2"], tmp_path,
               progress=CancelAfterFirstTarget())
    assert "torchscript done" in texts
    assert leftovers(tmp_path) == []


def test_a_failed_export_leaves_no_folder_it_created(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(ExportError, match="2 output names"):
        export(export_models.mlp(), specs_of("mlp"), ["onnx"], out, ExportOptions(output_names=("a", "b")))
    assert not out.exists() and (tmp_path / "new").exists()


def test_existing_outputs_and_the_source_are_not_overwritten(tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"keep me")
    with pytest.raises(ExportError, match="already exists"):
        export(export_models.mlp(), specs_of("mlp"), ["pt2"], tmp_path)
    assert (tmp_path / "model.pt2").read_bytes() == b"keep me"
    options = ExportOptions(overwrite=True, protect=(tmp_path / "model.pt2",))
    with pytest.raises(ExportError, match="the file being exported"):
        export(export_models.mlp(), specs_of("mlp"), ["pt2"], tmp_path, options)
    (result,) = export(export_models.mlp(), specs_of("mlp"), ["pt2"], tmp_path,
                       ExportOptions(overwrite=True))
    assert result.ok and (tmp_path / "model.pt2").read_bytes() != b"keep me"


@pytest.mark.parametrize(("targets", "options", "spec", "words"), [
    (["tflite"], None, "x: float32[batch(1..64), 8]", "not an export target"),
    (["pt2"], ExportOptions(quantize="dynamic-int8"), "x: float32[batch(1..64), 8]",
     "applies to the TorchScript and ONNX targets"),
    (["pt2"], None, "x: float32[batch(1..64), 5]", "could not run on example inputs"),
    (["pt2"], None, "x: float32[batch(1..64), 8]; y: float32[3]", "could not run on example"),
    (["torchscript"], ExportOptions(output_names=("a", "b")), "x: float32[batch(1..64), 8]",
     "1 outputs but 2 output names"),
])
def test_bad_requests_fail_plainly(tmp_path, targets, options, spec, words):
    with pytest.raises(ExportError) as info:
        export(export_models.mlp(), parse_specs(spec), targets, tmp_path, options)
    assert words in info.value.message
    assert leftovers(tmp_path) == []


def test_missing_output_folder_is_created(tmp_path):
    results = export(export_models.mlp(), specs_of("mlp"), ["pt2"], tmp_path / "new" / "dir")
    path = Path(results[0].path)
    assert path.parent == tmp_path / "new" / "dir" and path.exists()


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="could not be created"):
        export(export_models.mlp(), specs_of("mlp"), ["pt2"], tmp_path / "file")


def test_nothing_to_quantize(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ExportError, match="nothing to quantize"):
        export(model.eval(), parse_specs("x: float32[batch(1..8), 3, 4, 4]"), ["torchscript"],
               tmp_path, ExportOptions(quantize="dynamic-int8"))
    assert leftovers(tmp_path) == ["model.torchscript.pt"]  # the float one is complete


def test_exporter_output_is_kept_out_of_the_terminal(tmp_path, capfd):
    export(export_models.gated(), specs_of("gated"), ["onnx"], tmp_path)
    out, err = capfd.readouterr()
    assert out == "" and "torch.export" not in err and "TracerWarning" not in err


def test_details_lose_terminal_colour_codes():
    error = export_common.failure("Plain.", RuntimeError("\x1b[96mcoloured\x1b[0m text"))
    assert error.details == "RuntimeError: coloured text"


def test_large_models_keep_their_weights_in_one_data_file(tmp_path, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(onnx_target, "LARGE", 0)  # treat the MLP as a model past 2 GB
    (result,) = export(export_models.mlp(), specs_of("mlp"), ["onnx"], tmp_path)
    assert leftovers(tmp_path) == ["model.onnx", "model.onnx.data"]
    assert [Path(f).name for f in result.files] == ["model.onnx", "model.onnx.data"]
    assert result.size == sum(p.stat().st_size for p in tmp_path.iterdir())
    session = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"])
    x = example_inputs(specs_of("mlp"), {"batch": 16})["x"]
    with torch.no_grad():
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - export_models.mlp()(x).numpy()
                      ).max() <= 1e-5


def test_per_tensor_data_files_are_gathered_into_one(files, tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save_model(onnx.load(str(files["onnx"])), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)
    assert len(leftovers(tmp_path)) > 3
    onnx_target.one_data_file(path, size_threshold=0)
    assert leftovers(tmp_path) == ["model.onnx", "model.onnx.data"]
    onnx.checker.check_model(str(path))


def test_both_onnx_exporters_failing_is_one_plain_error(tmp_path, monkeypatch):
    def refuses(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(torch.onnx, "export", refuses)
    with pytest.raises(ExportError) as info:
        export(export_models.mlp(), specs_of("mlp"), ["onnx"], tmp_path)
    assert info.value.message.startswith("The ONNX export failed (after the torch.export-based")
    assert "aten::frobnicate" in info.value.message + info.value.details
    assert leftovers(tmp_path) == []

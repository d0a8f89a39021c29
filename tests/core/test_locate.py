"""core.checks.locate: an artefact with one damaged layer is traced back to that layer's module."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.checks.locate import align, locate
from core.checks.locate_capture import ModuleValue
from core.checks.parity import check_parity
from core.errors import Cancelled, CheckFailed
from core.progress import Recorder
from core.report.checks import render_html, render_markdown
from core.runtime import build_runner
from core.runtime.base import Runner
from core.runtime.eager import EagerRunner

SPEC = "x: float32[batch(1..4), 16]"
DAMAGED = "layers.6"  # the fourth Linear of the stack


class DeepMLP(nn.Module):
    def __init__(self, depth: int = 6, width: int = 16) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(depth):
            blocks += [nn.Linear(width, width), nn.ReLU()]
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))


def deep_mlp() -> DeepMLP:
    """Seeded, so every call builds the same weights (the CLI builds it from this name)."""
    torch.manual_seed(3)
    return DeepMLP().eval()


def export_artefacts(folder: Path) -> dict[str, Path]:
    """Good and damaged (one weight scaled after export) ONNX, TorchScript and .pt2 files."""
    import onnx
    from onnx import numpy_helper

    model, example = deep_mlp(), (torch.randn(2, 16),)
    paths = {k: folder / name for k, name in [("onnx", "m.onnx"), ("ts", "m.ts"), ("pt2", "m.pt2"),
                                              ("legacy", "legacy.onnx")]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, paths["onnx"], dynamo=True, input_names=["x"],
                          dynamic_shapes=({0: "batch"},), verbose=False)
        torch.onnx.export(model, example, paths["legacy"], dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
        torch.jit.trace(model, example).save(str(paths["ts"]))
        dynamic = ({0: torch.export.Dim.DYNAMIC},)
        torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), paths["pt2"])
    proto = onnx.load(paths["onnx"])
    for init in proto.graph.initializer:
        if init.name == f"{DAMAGED}.weight":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(proto, folder / "damaged.onnx")
    scripted = torch.jit.load(str(paths["ts"]))
    with torch.no_grad():
        dict(scripted.named_parameters())[f"{DAMAGED}.weight"].mul_(1.5)
    scripted.save(str(folder / "damaged.ts"))
    program = torch.export.load(paths["pt2"])
    with torch.no_grad():
        program.state_dict[f"{DAMAGED}.weight"].mul_(1.5)
    torch.export.save(program, folder / "damaged.pt2")
    return paths | {f"damaged_{k}": folder / f"damaged.{k}" for k in ("onnx", "ts", "pt2")}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_artefacts(tmp_path_factory.mktemp("locate"))


@pytest.fixture()
def eager() -> EagerRunner:
    return EagerRunner(deep_mlp())


@pytest.mark.parametrize("kind", ["damaged_onnx", "damaged_ts", "damaged_pt2"])
def test_the_damaged_layer_is_named(artefacts, eager, kind):
    loc = locate(eager, build_runner(artefacts[kind], trust=True), SPEC)
    first = loc.first_divergence
    assert first is not None and first.module == DAMAGED and first.module_type == "Linear"
    assert [r.depth for r in loc.rows] == list(range(1, len(loc.rows) + 1))
    before = [r for r in loc.rows if r.depth < first.depth]
    assert before and not any(r.exceeds for r in before)
    assert first.max_abs > 1e-2 and loc.rows[-1].exceeds  # the error carries on to the end
    assert loc.to_json()["first_divergence"]["module"] == DAMAGED


@pytest.mark.parametrize("kind", ["onnx", "ts", "pt2"])
def test_a_faithful_artefact_has_no_divergence(artefacts, eager, kind):
    loc = locate(eager, build_runner(artefacts[kind], trust=True), SPEC, point={"batch": 3})
    assert loc.first_divergence is None and not loc.approximate_mapping
    assert loc.input_shapes == {"x": [3, 16]}
    modules = [r.module for r in loc.rows]
    assert {"layers.0", "layers.1", DAMAGED, "layers", "head"} <= set(modules)
    assert modules.index("layers.0") < modules.index(DAMAGED) < modules.index("layers")


def test_artefact_as_reference_against_another_artefact(artefacts):
    ts = build_runner(artefacts["ts"], trust=True)
    loc = locate(ts, build_runner(artefacts["damaged_onnx"]), SPEC)
    assert loc.first_divergence.module == DAMAGED and loc.first_divergence.op == "Gemm"


def test_a_compiled_reference_is_looked_inside_through_its_module(artefacts):
    from core.runtime.compiled import CompiledRunner

    compiled = CompiledRunner(deep_mlp(), compile_backend="eager")
    loc = locate(compiled, build_runner(artefacts["damaged_pt2"], trust=True), SPEC)
    assert loc.first_divergence.module == DAMAGED and loc.first_divergence.module_type == "Linear"


def test_legacy_onnx_names_are_inferred_and_marked_approximate(artefacts, eager):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(artefacts["legacy"])
    for init in proto.graph.initializer:  # the legacy exporter keeps parameter names too
        if init.name == f"{DAMAGED}.bias":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1.0, init.name))
    damaged = artefacts["legacy"].with_name("legacy_damaged.onnx")
    onnx.save(proto, damaged)
    loc = locate(eager, build_runner(damaged), SPEC)
    assert loc.approximate_mapping and any("approximate" in n for n in loc.notes)
    assert loc.first_divergence.module == DAMAGED


def test_given_inputs_and_cancel(artefacts, eager):
    candidate = build_runner(artefacts["damaged_pt2"], trust=True)
    inputs = {"x": np.ones((2, 16), np.float32)}
    recorder = Recorder()
    loc = locate(eager, candidate, inputs=inputs, progress=recorder)
    assert loc.input_shapes == {"x": [2, 16]} and recorder.updates[-1][:2] == (3, 3)
    with pytest.raises(Cancelled):
        locate(eager, candidate, inputs=inputs, progress=Recorder(cancel_after=2))


def test_a_backend_it_cannot_look_inside_is_one_sentence(eager):
    class Opaque(Runner):
        backend = "executorch"

        def _run_impl(self, feed):
            return {"output": feed["x"]}

    with pytest.raises(CheckFailed, match="cannot look inside opaque"):
        locate(eager, Opaque("opaque", ["x"]), SPEC)


def test_report_shows_the_depth_plot_and_the_first_divergence(artefacts, eager):
    candidate = build_runner(artefacts["damaged_onnx"])
    result = check_parity(eager, candidate, SPEC, points=[{"batch": 2}])
    assert not result
    result.localisation = locate(eager, candidate, SPEC, point={"batch": 2}).to_json()
    data = result.to_dict()
    assert data["first_divergence"]["module"] == DAMAGED
    page = render_html(result)
    assert "<h2>Where it diverges</h2>" in page and 'class="depth-plot"' in page
    assert f"first out of tolerance: {DAMAGED}" in page
    markdown = render_markdown(data)
    assert f"| {DAMAGED} | OUT |" in markdown and "| Linear | Gemm |" in markdown
    assert "Task-level verdicts" in markdown and "Why: FAIL under the float profile" in markdown


def test_names_under_a_wrapper_prefix_are_matched_without_it():
    def values(*names: str) -> list[ModuleValue]:
        return [ModuleValue(n, "Linear", np.zeros(2, np.float32), "float32") for n in names]

    pairs, renamed = align(values("model.enc.0", "model.enc.1", "model.enc"), values("enc.0", "enc"))
    assert renamed and [(a.module, b.module) for a, b in pairs] == [("model.enc.0", "enc.0"),
                                                                   ("model.enc", "enc")]
    pairs, renamed = align(values("a", "b"), values("b", "a"))
    assert not renamed and [(a.module, b.module) for a, b in pairs] == [("a", "a"), ("b", "b")]


class SharedInplace(nn.Module):
    """One in-place ReLU module used twice: each side must compare the same (last) call."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.act = nn.Linear(16, 16), nn.Linear(16, 16), nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.b(self.act(self.a(x))))


@pytest.mark.parametrize("kind", ["ts", "pt2", "onnx"])
def test_a_module_called_twice_in_place_is_no_false_divergence(tmp_path, kind):
    torch.manual_seed(0)
    model, example = SharedInplace().eval(), (torch.randn(2, 16),)
    path = tmp_path / f"shared.{kind}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ts":
            torch.jit.trace(model, example).save(str(path))
        elif kind == "pt2":
            torch.export.save(torch.export.export(model, example), path)
        else:
            torch.onnx.export(model, example, path, dynamo=True, input_names=["x"], verbose=False)
    loc = locate(EagerRunner(model), build_runner(path, trust=True), "x: float32[2, 16]")
    assert [r.module for r in loc.rows] == ["a", "b", "act"]
    assert loc.first_divergence is None and loc.rows[-1].max_abs < 1e-5

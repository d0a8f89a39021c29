"""core.diff.structure: structure diff, value diff, diff against a model, bad input, 200k keys."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.diff import values as diff_values
from core.diff.remap import STRIP, apply_remap, rules_of, write_remapped
from core.diff.structure import (
    DTYPE,
    ONLY_A,
    ONLY_B,
    SAME,
    SHAPE,
    diff_against_model,
    diff_checkpoints,
    diff_files,
    model_keys,
    open_pair,
)
from core.errors import Cancelled, CheckpointError
from core.model import Checkpoint, Section, TensorInfo
from core.progress import Recorder
from tests.fixtures.models import FixtureFiles


def original(files: FixtureFiles) -> dict[str, torch.Tensor]:
    return torch.load(files["state_dict"], weights_only=True)


def save(tmp_path: Path, name: str, sd: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_identical_files(files):
    result = diff_files(files["state_dict"], files["state_dict"], values=True)
    assert bool(result)
    assert result.totals[SAME] == 11 and sum(result.totals.values()) == 11
    assert result.value_totals["identical"] == 11
    assert result.summary().startswith("11 same, 0 shape mismatch")
    json.dumps(result.to_dict())


def test_structure_diff_reads_no_tensor_data(files, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr("core.tensor_io.read_range", refuse)
    monkeypatch.setattr(diff_values, "stream", refuse)
    result = diff_files(files["training"], files["safetensors"], suggest=True)
    assert result.totals == {ONLY_A: 1, ONLY_B: 0, SHAPE: 0, DTYPE: 0, SAME: 10}
    assert result.sections[0].with_status(ONLY_A)[0].name == "head.weight"  # tied, not in safetensors


def test_module_prefix_is_suggested_and_applying_it_leaves_no_difference(files, tmp_path):
    sd = original(files)
    prefixed = save(tmp_path, "dp.pt", {f"module.{k}": v for k, v in sd.items()})
    result = diff_files(prefixed, files["state_dict"], suggest=True)
    assert result.totals[SAME] == 0 and "No common keys" in result.summary()
    [suggestion] = result.suggestions
    assert suggestion.rules[0].kind == STRIP and suggestion.rules[0].old == "module."
    assert suggestion.explains == 11 and not suggestion.ambiguous
    a, b = open_pair(prefixed, files["state_dict"])
    assert diff_checkpoints(a, b, rules=rules_of(result.suggestions), values=True)
    out = tmp_path / "renamed.safetensors"
    write_remapped(a, rules_of(result.suggestions), out)
    after = diff_files(out, files["state_dict"], values=True)
    assert bool(after) and after.value_totals["identical"] == 11  # tied head.weight restored


def test_lightning_prefix_against_plain_state_dict(files):
    result = diff_files(files["lightning"], files["state_dict"], suggest=True)
    assert result.sections[0].section_a == "model"
    [suggestion] = result.suggestions
    assert (suggestion.rules[0].kind, suggestion.rules[0].old, suggestion.explains) == (STRIP, "model.", 11)


def test_renamed_layer_segment(tmp_path):
    torch.manual_seed(0)
    sd = {}
    for i in range(3):
        for part in ("q", "k", "v"):
            sd[f"layers.{i}.attn.{part}.weight"] = torch.randn(4, 4)
        sd[f"layers.{i}.norm.weight"] = torch.ones(4)
    a = save(tmp_path, "a.pt", sd)
    b = tmp_path / "b.safetensors"
    save_file({k.replace(".attn.", ".attention."): v for k, v in sd.items()}, b)
    result = diff_files(a, b, suggest=True)
    assert result.totals[SAME] == 3 and result.totals[ONLY_A] == 9
    [suggestion] = result.suggestions
    assert (suggestion.rules[0].old, suggestion.rules[0].new) == ("attn", "attention")
    assert suggestion.explains == 9 and not suggestion.ambiguous
    renamed = diff_checkpoints(*open_pair(a, b), rules=rules_of(result.suggestions), values=True)
    assert renamed and renamed.value_totals["identical"] == 12


def test_one_perturbed_tensor_is_found_with_its_max_abs_diff(files, tmp_path):
    sd = original(files)
    changed = {k: v.clone() for k, v in sd.items()}
    changed["conv.weight"][1, 2, 0, 1] += 0.25
    result = diff_files(files["state_dict"], save(tmp_path, "p.pt", changed), values=True)
    different = [k for k in result.sections[0].keys if k.values.status != "identical"]
    assert [k.name for k in different] == ["conv.weight"]
    v = different[0].values
    assert v.status == "different" and not v.bit_identical
    assert v.max_abs == pytest.approx(0.25, abs=1e-6)
    assert v.mean_abs == pytest.approx(0.25 / sd["conv.weight"].numel(), rel=1e-5)
    assert not result and result.value_totals == {"different": 1, "close": 0, "identical": 10,
                                                  "skipped": 0}


def test_fp16_copy_is_close_not_identical(files, tmp_path):
    sd = original(files)
    half = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    result = diff_files(files["state_dict"], save(tmp_path, "h.pt", half), values=True)
    assert result.totals[DTYPE] == 10 and result.totals[SAME] == 1  # num_batches_tracked
    assert result.value_totals == {"different": 0, "close": 10, "identical": 1, "skipped": 0}
    conv = next(k for k in result.sections[0].keys if k.name == "conv.weight").values
    assert 0 < conv.max_abs < 1e-3 and conv.cosine > 0.99999 and not conv.bit_identical
    assert bool(result) is False  # dtypes differ
    strict = diff_files(files["state_dict"], save(tmp_path, "h.pt", half), values=True, rtol=0,
                        atol=0)
    assert strict.value_totals["different"] == 8  # bn.weight (ones), bn.bias (zeros) exact in fp16


def test_values_stream_in_chunks_and_match_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(diff_values, "CHUNK", 64)
    torch.manual_seed(0)
    x = torch.randn(30, 33)
    y = x + 0.01 * torch.randn(30, 33)
    y[7, 3] = float("nan")
    x[8, 1] = y[8, 1] = float("inf")
    a = save(tmp_path, "a.pt", {"w": x, "t": x.t()})  # t: a non-contiguous view
    b = save(tmp_path, "b.pt", {"w": y, "t": y.t()})
    recorder = Recorder()
    result = diff_files(a, b, values=True, progress=recorder)
    assert len(recorder.updates) > 30 and recorder.updates[-1][0] == recorder.updates[-1][1]
    ok = torch.isfinite(x) & torch.isfinite(y)
    xs, ys = x[ok].double(), y[ok].double()
    for key in result.sections[0].keys:
        v = key.values
        assert v.nonfinite_mismatch == 1 and v.status == "different"
        assert v.max_abs == pytest.approx(float((xs - ys).abs().max()), rel=1e-5)
        assert v.rel_l2 == pytest.approx(float((xs - ys).norm() / ys.norm()), rel=1e-4)
        assert v.cosine == pytest.approx(float(torch.nn.functional.cosine_similarity(xs, ys, 0)),
                                         rel=1e-5)


def test_value_diff_progress_and_cancel(files, tmp_path):
    recorder = Recorder(cancel_after=3)
    with pytest.raises(Cancelled):
        diff_files(files["state_dict"], files["state_dict"], values=True, progress=recorder)
    assert len(recorder.updates) == 3


def test_sections_can_be_picked(files):
    a, b = open_pair(files["ema"], files["ema"])
    assert diff_checkpoints(a, b, sections=[("model", "ema")], values=True)
    with pytest.raises(CheckpointError, match="File B .* no section 'nope'"):
        diff_checkpoints(a, b, sections=[("model", "nope")])


def test_unrelated_models_have_a_clear_summary_and_no_suggestions(files):
    result = diff_files(files["state_dict"], files["dtypes"], suggest=True)
    assert result.summary().startswith("No common keys: A has 11 tensors and B has 12")
    assert "different models" in result.summary()
    assert result.suggestions == []


@pytest.mark.parametrize("which", ["A", "B"])
def test_a_file_that_fails_to_open_is_named(files, tmp_path, which):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\xff" * 64)
    args = (bad, files["state_dict"]) if which == "A" else (files["state_dict"], bad)
    with pytest.raises(CheckpointError) as info:
        diff_files(*args)
    assert info.value.message.startswith(f"File {which} ('broken.safetensors'): ")


MODEL_SOURCE = '''
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.conv = nn.Conv2d(3, 4, 5)         # size mismatch: 5x5 kernel instead of 3x3
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 8, bias=False)  # fc.bias unexpected
        self.head = nn.Linear(8, 10, bias=False)
        self.extra = nn.Linear(2, 2, bias=False)  # extra.weight missing

def build():
    return Net()
'''


def torch_complaints(error: str) -> dict[str, list[str]]:
    def quoted(header: str) -> list[str]:
        found = re.search(header + r"(.*?)\.\s*(\n|$)", error)
        return sorted(re.findall(r'"([^"]+)"', found.group(1))) if found else []

    return {"missing_keys": quoted("Missing key\\(s\\) in state_dict: "),
            "unexpected_keys": quoted("Unexpected key\\(s\\) in state_dict: "),
            "size_mismatch": sorted(re.findall(r"size mismatch for ([^:]+):", error))}


def test_checkpoint_against_model_reports_what_load_state_dict_does(files, tmp_path):
    source = tmp_path / "net.py"
    source.write_text(MODEL_SOURCE)
    expected = model_keys(f"{source}:build")
    assert expected["conv.weight"].shape == (4, 3, 5, 5)
    a = open_pair(files["state_dict"], files["state_dict"])[0]
    result = diff_against_model(a, expected, f"{source}:build")
    report = {k: sorted(v) for k, v in result.load_state_dict_report().items()}
    assert report == {"missing_keys": ["extra.weight"], "unexpected_keys": ["fc.bias"],
                      "size_mismatch": ["conv.weight"]}
    namespace: dict[str, object] = {}
    exec(MODEL_SOURCE, namespace)
    with pytest.raises(RuntimeError) as info:
        namespace["build"]().load_state_dict(original(files), strict=True)  # type: ignore[operator]
    assert torch_complaints(str(info.value)) == report
    assert "would fail: 1 missing, 1 unexpected, 1 size mismatch" in result.summary()
    assert result.to_dict()["load_state_dict"] == result.load_state_dict_report()


def test_lightning_checkpoint_against_model_suggests_the_fix(files, tmp_path):
    source = tmp_path / "tiny.py"
    source.write_text("from tests.fixtures.models import TinyNet\n")
    a = open_pair(files["lightning"], files["lightning"])[0]
    result = diff_against_model(a, model_keys(f"{source}:TinyNet"), "tiny")
    assert len(result.load_state_dict_report()["unexpected_keys"]) == 11
    [suggestion] = result.suggestions
    assert suggestion.rules[0].old == "model." and suggestion.explains == 11
    fixed = diff_against_model(a, model_keys(f"{source}:TinyNet"), "tiny",
                               rules=rules_of(result.suggestions))
    assert fixed and "would accept" in fixed.summary()


def synthetic(names: list[str], prefix: str = "", width: int = 16) -> Checkpoint:
    tensors = {prefix + n: TensorInfo(prefix + n, (i % 7 + 1, width), "float32")
               for i, n in enumerate(names)}
    return Checkpoint(Path("synthetic.safetensors"), "safetensors",
                      {"model": Section("model", tensors)}, weights="model")


def test_200k_keys_structure_diff_and_suggestions_stay_fast():
    names = [f"model.layers.{i // 20}.block{i % 20}.weight" for i in range(200_000)]
    start = time.perf_counter()
    result = diff_checkpoints(synthetic(names, "module."), synthetic(names), suggest=True)
    seconds = time.perf_counter() - start
    [suggestion] = result.suggestions
    assert suggestion.rules[0].old == "module." and suggestion.explains == 200_000
    mapping = apply_remap([f"module.{n}" for n in names], rules_of(result.suggestions))
    assert mapping["module.model.layers.0.block0.weight"] == "model.layers.0.block0.weight"
    unrelated = diff_checkpoints(synthetic(names), synthetic([f"x{i}" for i in range(200_000)], width=3),
                                 suggest=True)
    assert unrelated.suggestions == [] and "No common keys" in unrelated.summary()
    assert seconds < 30, seconds  # about 2 s on a shared 2-core machine


def test_default_section_is_the_weights_else_the_first_with_tensors(tmp_path):
    from core.diff.structure import default_section
    from core.formats import open_checkpoint

    opt_only, nothing = tmp_path / "opt_only.pt", tmp_path / "values.pt"
    torch.save({"epoch": 2, "optimizer": {"state": {0: {"momentum_buffer": torch.ones(3)}},
                                          "param_groups": [{"lr": 0.1, "params": [0]}]}}, opt_only)
    torch.save({"epoch": 2, "lr": 0.1}, nothing)
    assert default_section(open_checkpoint(opt_only), "B") == "optimizer"
    with pytest.raises(CheckpointError, match=r"^File B \('values.pt'\) holds no tensors to compare\.$"):
        default_section(open_checkpoint(nothing), "B")
    result = diff_checkpoints(open_checkpoint(opt_only), open_checkpoint(opt_only))
    assert [(s.section_a, s.section_b) for s in result.sections] == [("optimizer", "optimizer")]
    assert set(result.totals) >= {SAME} and result.totals[SAME] == 1

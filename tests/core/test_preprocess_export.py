"""Preprocessing in exports: recorded in ONNX / TorchScript / .pt2 (and safetensors via convert),
shown by inspect, and baked so the artefact takes raw uint8 NHWC pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import CheckpointError
from core.export import ExportOptions, export
from core.export.preprocess import normalise
from core.formats import open_checkpoint
from core.inputs import parse_specs
from core.inputs.preprocess import METADATA_KEY, find_recorded, from_json, parse_preprocess
from core.inspect import inspect_checkpoint

SPEC = "image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, layout nhwc, uint8, bgr"
INPUT = "x: float32[batch(1..8), 3, 16, 16]"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("baked")
    options = ExportOptions(name="cnn", preprocess=parse_preprocess(SPEC), bake_preprocess=True)
    results = export(small_cnn(), parse_specs(INPUT), ["onnx", "torchscript", "pt2"], out, options)
    assert all(r.ok for r in results)
    assert results[0].preprocess["raw_inputs"] == "x: uint8[batch(1..8), 16, 16, 3] in 0..255"
    return {r.target: Path(r.path) for r in results}


def raw_images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)


def test_baked_onnx_takes_raw_uint8_nhwc_and_matches_eager_on_normalised_nchw(baked) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(baked["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(uint8)"
    raw = raw_images(5, seed=7)
    got = session.run(None, {"x": raw})[0]
    # the normalised input, written out by hand: /255, RGB -> BGR, ImageNet mean/std, NCHW
    by_hand = ((raw.astype(np.float32) / 255)[..., ::-1] - MEAN) / STD
    by_hand = np.ascontiguousarray(by_hand.transpose(0, 3, 1, 2))
    with torch.no_grad():
        expected = small_cnn()(torch.from_numpy(by_hand)).numpy()
    assert np.abs(got - expected).max() <= 1e-4
    normalised = normalise(torch.from_numpy(raw), parse_preprocess(SPEC)).numpy()
    assert np.abs(normalised - by_hand).max() <= 1e-5


def test_baked_torchscript_and_pt2_take_raw_pixels(baked) -> None:
    raw = torch.from_numpy(raw_images(3, seed=8))
    with torch.no_grad():
        expected = small_cnn()(normalise(raw, parse_preprocess(SPEC)))
        scripted = torch.jit.load(str(baked["torchscript"]))(raw)
        program = torch.export.load(str(baked["pt2"])).module()(raw)
    assert (scripted - expected).abs().max() <= 1e-4 and (program - expected).abs().max() <= 1e-4


def test_onnx_metadata_holds_the_spec(baked) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(baked["onnx"])).metadata_props}
    recorded = from_json(props[METADATA_KEY])
    assert recorded.to_text() == parse_preprocess(SPEC).to_text() and recorded.baked


@pytest.mark.parametrize("target", ["onnx", "torchscript", "pt2"])
def test_inspect_shows_the_recorded_spec(baked, target: str) -> None:
    result = inspect_checkpoint(open_checkpoint(baked[target]))
    assert result.preprocess is not None and result.preprocess["baked"] is True
    assert result.preprocess["text"] == parse_preprocess(SPEC).to_text()
    assert result.to_dict()["preprocess"] == result.preprocess


def test_recorded_only_keeps_the_float_input(tmp_path: Path) -> None:
    spec = parse_preprocess("image: scale 1/255, mean 0.5, std 0.5, resize 20, crop 16")
    options = ExportOptions(name="rec", preprocess=spec, onnx_exporter="legacy")
    result = export(small_cnn(), parse_specs(INPUT), ["onnx"], tmp_path, options)[0]
    checkpoint = open_checkpoint(result.path)
    assert checkpoint.metadata["graph_inputs"][0]["dtype"] == "float32"
    recorded = find_recorded(checkpoint.metadata)
    assert recorded == spec and not recorded.baked and "raw_inputs" not in result.preprocess


def test_convert_to_safetensors_carries_the_spec(baked, tmp_path: Path) -> None:
    from core.convert import convert

    out = tmp_path / "cnn.safetensors"
    convert(open_checkpoint(baked["torchscript"]), out)
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        stored = f.metadata()[METADATA_KEY]
    assert from_json(stored).to_text() == parse_preprocess(SPEC).to_text()
    assert inspect_checkpoint(open_checkpoint(out)).preprocess["text"] == parse_preprocess(SPEC).to_text()


@pytest.mark.parametrize(("spec", "bake", "inputs", "words"), [
    (None, True, INPUT, "needs a preprocessing spec"),
    ("text: tokenizer .", True, INPUT, "recorded only; it cannot be baked"),
    ("image: mean 0.1,0.2,0.3, channels 3", False, "x: float32[batch, 1, 16, 16]", "3 channels"),
    ("image: crop 32", False, INPUT, "outside the height"),
    ("image: input y", False, INPUT, "names the input 'y'"),
    ("image: uint8", True, INPUT + "; y: float32[batch, 3, 16, 16]", "one input"),
])
def test_bad_preprocessing_for_export_is_one_sentence(tmp_path: Path, spec: str | None, bake: bool,
                                                      inputs: str, words: str) -> None:
    options = ExportOptions(preprocess=parse_preprocess(spec) if spec else None, bake_preprocess=bake)
    with pytest.raises(CheckpointError, match=words) as caught:
        export(small_cnn(), parse_specs(inputs), ["onnx"], tmp_path / "out", options)
    assert "\n" not in caught.value.message
    assert not (tmp_path / "out").exists()


def test_text_spec_records_the_tokenizer_files(tmp_path: Path) -> None:
    folder = tmp_path / "my-tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"model": {"type": "WordPiece"}}')
    options = ExportOptions(name="txt", preprocess=parse_preprocess(f"text: tokenizer {folder}"),
                            onnx_exporter="legacy")
    model = nn.Sequential(nn.Linear(16, 4)).eval()
    results = export(model, parse_specs("x: float32[batch, 16]"), ["onnx", "torchscript"], tmp_path, options)
    for result in results:
        recorded = inspect_checkpoint(open_checkpoint(result.path)).preprocess
        assert recorded["kind"] == "text" and recorded["tokenizer"] == "my-tokenizer"
        assert list(recorded["tokenizer_files"]) == ["tokenizer.json"]

"""check preprocess: images through the declared and the artefact's pipelines, and the skew ranking."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checks.parity import check_parity
from core.checks.preprocess import check_preprocess
from core.checks.preprocess_parity import NormalisingRunner, for_baked_candidate, recorded_spec
from core.checks.preprocess_pipeline import (
    generated_images,
    load_images,
    model_input,
    raw_pixels,
    resized,
    to_raw,
)
from core.errors import CheckFailed
from core.export import ExportOptions, export
from core.inputs import parse_specs
from core.inputs.preprocess import parse_preprocess
from core.runtime import build_runner
from tests.core.test_preprocess_export import INPUT, SPEC, small_cnn

ARCH = '''
import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def build():
    return SmallCNN().eval()
'''


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("check")
    model = small_cnn()
    (out / "cnn_arch.py").write_text(ARCH)
    torch.save(model.state_dict(), out / "weights.pt")
    paths = {"arch": out / "cnn_arch.py", "weights": out / "weights.pt"}
    for name, bake in (("baked", True), ("recorded", False)):
        options = ExportOptions(name=name, preprocess=parse_preprocess(SPEC), bake_preprocess=bake,
                                onnx_exporter="legacy")
        paths[name] = Path(export(model, parse_specs(INPUT), ["onnx"], out, options)[0].path)
    return paths


def reference_runner(exported: dict[str, Path]):
    return build_runner(f"{exported['arch']}:build", checkpoint=exported["weights"])


def test_baked_artefact_matches_the_declared_pipeline_and_ranks_no_scale_far_above_antialias(
        exported) -> None:
    spec = parse_preprocess(SPEC)
    result = check_preprocess(build_runner(exported["baked"]), None, _recorded(exported["baked"]),
                              reference_runner(exported))
    assert result and result.max_abs_diff <= 1e-4 and result.image_source == "generated"
    names = [s.name for s in result.skews]
    assert names.index("no /255") < names.index("antialias off")
    change = {s.name: s.relative_change for s in result.skews}
    assert change["no /255"] > 100 * change["antialias off"] > 0
    assert {"RGB vs BGR", "no mean/std", "NHWC read as NCHW"} <= set(names)
    assert result.to_dict()["declared"]["text"] == spec.to_text()


def test_baked_artefact_without_reference_gets_raw_skews(exported) -> None:
    result = check_preprocess(build_runner(exported["baked"]), None, _recorded(exported["baked"]))
    change = {s.name: s.relative_change for s in result.skews}
    assert result and change["no /255"] > 10 * change["antialias off"]
    assert any("clip at 0 and 255" in n for n in result.notes)


def test_declared_pipeline_that_differs_from_the_recorded_one_fails(exported) -> None:
    declared = parse_preprocess("image: scale 1/255, layout nhwc, uint8")  # no mean/std, rgb
    result = check_preprocess(build_runner(exported["recorded"]), declared,
                              _recorded(exported["recorded"]))
    assert not result and result.max_abs_diff > 1e-2
    assert result.recorded["text"] == parse_preprocess(SPEC).to_text()


def test_no_spec_anywhere_is_one_sentence(exported) -> None:
    with pytest.raises(CheckFailed, match="records no preprocessing; declare it"):
        check_preprocess(build_runner(exported["recorded"]), None, None)


def test_resize_and_centre_crop_geometry() -> None:
    image = torch.arange(40 * 60 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(40, 60, 3)
    spec = parse_preprocess("image: resize 20, crop 16")
    assert tuple(resized(image, spec, (16, 16)).shape) == (1, 3, 16, 16)
    wide = parse_preprocess("image: resize 20")  # shorter side 20, aspect kept -> 20x30
    assert tuple(resized(image, wide, (20, 30)).shape) == (1, 3, 20, 30)
    flat = torch.full((8, 8, 3), 200, dtype=torch.uint8)
    exact = parse_preprocess("image: crop 4")
    assert torch.equal(resized(flat, exact, (4, 4)), torch.full((1, 3, 4, 4), 200.0))


def test_raw_pixels_round_trip_through_to_raw() -> None:
    spec = parse_preprocess(SPEC)
    image = generated_images(1, (12, 12), seed=3)[0]
    raw = raw_pixels(image, spec, (12, 12))
    assert raw.dtype == torch.uint8 and tuple(raw.shape) == (1, 12, 12, 3)
    assert torch.equal(to_raw(model_input(image, spec, (12, 12)), spec), raw)


def test_images_from_a_folder(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow is an optional extra for image folders")
    rng = np.random.default_rng(0)
    for i in range(3):
        pil.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images(tmp_path)
    assert [tuple(i.shape) for i in images] == [(20, 24, 3), (21, 24, 3), (22, 24, 3)]
    assert images[0].dtype == torch.uint8
    (tmp_path / "3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CheckFailed, match="'3.png' could not be read"):
        load_images(tmp_path)


def test_missing_pillow_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(CheckFailed, match="needs Pillow, which is not installed"):
        load_images(tmp_path)


RAW = "x: uint8[batch(1..8), 16, 16, 3] in 0..255"


def test_parity_feeds_raw_pixels_to_the_baked_artefact_and_normalised_ones_to_eager(exported) -> None:
    candidate = build_runner(exported["baked"])
    plain = reference_runner(exported)
    reference = for_baked_candidate(plain, candidate, f"{exported['arch']}:build", exported["baked"])
    assert isinstance(reference, NormalisingRunner)
    assert [[d.value for d in s.dims[1:]] for s in reference.input_specs] == [[16, 16, 3]]
    result = check_parity(reference, candidate, None)
    assert result and result.cases
    assert not check_parity(plain, candidate, RAW)  # the eager model cannot take raw pixels


def test_parity_with_another_preprocessing_on_the_reference_side_fails(exported) -> None:
    spec = recorded_spec(exported["baked"])
    wrong = NormalisingRunner(reference_runner(exported), replace(spec, channel_order="rgb"), "x")
    assert not check_parity(wrong, build_runner(exported["baked"]), RAW)


def test_parity_leaves_plain_artefacts_alone(exported) -> None:
    plain = reference_runner(exported)
    recorded_only = build_runner(exported["recorded"])
    assert for_baked_candidate(plain, recorded_only, "arch", exported["recorded"]) is plain
    baked = build_runner(exported["baked"])
    assert for_baked_candidate(baked, baked, exported["baked"], exported["baked"]) is baked


def _recorded(path: Path):
    from core.formats import open_checkpoint
    from core.inputs.preprocess import find_recorded

    return find_recorded(open_checkpoint(path).metadata)

"""The preprocessing spec: parsing, one-sentence errors, text and JSON round trips."""

from __future__ import annotations

import pytest

from core.errors import CheckpointError
from core.inputs import parse_specs
from core.inputs.preprocess import (
    METADATA_KEY,
    check_against_input,
    find_recorded,
    from_json,
    parse_preprocess,
    with_tokenizer_files,
)

IMAGENET = ("image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, layout nhwc, uint8, "
            "resize 256, crop 224")


def test_parses_every_image_setting() -> None:
    spec = parse_preprocess(IMAGENET + ", bgr, antialias off, input pixels")
    assert spec.kind == "image"
    assert spec.scale == pytest.approx(1 / 255)
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert (spec.layout, spec.dtype, spec.channel_order) == ("nhwc", "uint8", "bgr")
    assert spec.resize == (256,) and spec.crop == (224, 224) and spec.output_size() == (224, 224)
    assert spec.antialias is False and spec.input == "pixels"


def test_defaults_and_one_value_lists() -> None:
    spec = parse_preprocess("image: mean 0.5, std 0.25, channels 1, resize 32x48")
    assert spec.means() == (0.5,) and spec.stds() == (0.25,)
    assert (spec.layout, spec.dtype, spec.channel_order, spec.scale) == ("nchw", "float32", "rgb", 1.0)
    assert spec.output_size() == (32, 48)
    assert parse_preprocess("image: uint8").means() == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("text", [IMAGENET, "image: bgr, antialias off, channels 3, input x",
                                  "image: scale 0.5, mean 1, crop 10x12", "text: tokenizer some/folder"])
def test_text_and_json_round_trip(text: str) -> None:
    spec = parse_preprocess(text)
    assert parse_preprocess(spec.to_text()) == spec
    assert from_json(spec.to_json()) == spec


@pytest.mark.parametrize(("text", "words"), [
    ("image: mean 0.1,0.2", "mean has 2 values but the image has 3 channels"),
    ("image: std 0.1,0.2,0.3,0.4", "std has 4 values"),
    ("image: layout nhcw", "'nhcw' is not a layout"),
    ("image: std 0.2,0,0.2", "std must not be 0"),
    ("image: resize 100, crop 224", "crop 224x224 is bigger than the resized image"),
    ("image: scale 1/0", "scale must be a positive number"),
    ("image: scale -2", "scale must be a positive number"),
    ("image: blur 3", "'blur' is not a preprocessing setting"),
    ("image: uint8, float32", "two dtypes are given"),
    ("image: mean 1, mean 2", "'mean' is given twice"),
    ("image: mean a,b,c", "'a' in mean is not a number"),
    ("image: resize 0", "resize is a size N or HxW"),
    ("image: antialias maybe", "antialias is 'on' or 'off'"),
    ("image: bgr, channels 1", "bgr needs 3 channels"),
    ("image: scale 1/255,, uint8", "empty item"),
    ("video: fps 3", "must start with 'image:' or 'text:'"),
    ("text: tokenizer", "'text: tokenizer FOLDER'"),
    ("image:  ", "it sets nothing after the colon"),
])
def test_bad_specs_get_one_sentence(text: str, words: str) -> None:
    with pytest.raises(CheckpointError) as caught:
        parse_preprocess(text)
    message = caught.value.message
    assert words in message
    assert message.startswith("The preprocessing spec is not valid: ") and message.count("\n") == 0


@pytest.mark.parametrize(("preprocess", "inputs", "words"), [
    ("image: resize 512", "x: float32[batch, 3, h(32..448), w(32..448)]", "resize 512 fits neither"),
    ("image: crop 224", "x: float32[batch, 3, 32, 32]", "side 224 after resize/crop is outside the height"),
    ("image: mean 1,2,3", "x: float32[batch, 1, 8, 8]", "3 channels but the input 'x' has 1"),
    ("image: uint8", "x: float32[batch, 16]", "has 2 dims"),
])
def test_spec_must_fit_the_model_input(preprocess: str, inputs: str, words: str) -> None:
    with pytest.raises(CheckpointError, match=words):
        check_against_input(parse_preprocess(preprocess), parse_specs(inputs)[0])


def test_spec_that_fits_the_model_input_passes() -> None:
    spec = parse_preprocess("image: resize 256, crop 224")
    check_against_input(spec, parse_specs("x: float32[batch, 3, h(32..448), w(32..448)]")[0])
    check_against_input(spec, parse_specs("x: float32[batch, 3, 224, 224]")[0])


def test_damaged_record_is_an_error_and_found_none() -> None:
    with pytest.raises(CheckpointError, match="recorded preprocessing is damaged"):
        from_json('{"text": "image: layout sideways"}')
    with pytest.raises(CheckpointError, match="recorded preprocessing is damaged"):
        from_json("not json")
    assert find_recorded({"metadata_props": {METADATA_KEY: "{}"}}) is None
    spec = parse_preprocess(IMAGENET)
    assert find_recorded({"metadata_props": {METADATA_KEY: spec.to_json()}}) == spec
    assert find_recorded({METADATA_KEY: spec.to_json()}) == spec
    assert find_recorded({"format": "pt"}) is None


def test_tokenizer_files_are_hashed(tmp_path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    spec = with_tokenizer_files(parse_preprocess(f"text: tokenizer {folder}"))
    assert spec.tokenizer == "tok" and list(spec.tokenizer_files) == ["tokenizer.json"]
    assert len(spec.tokenizer_files["tokenizer.json"]) == 64
    assert from_json(spec.to_json()).tokenizer_files == spec.tokenizer_files
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer files"):
        with_tokenizer_files(parse_preprocess(f"text: tokenizer {folder}"))
    with pytest.raises(CheckpointError, match="does not exist"):
        with_tokenizer_files(parse_preprocess(f"text: tokenizer {tmp_path / 'nope'}"))

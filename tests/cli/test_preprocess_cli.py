"""`export --preprocess/--bake-preprocess`, `inspect` and `check preprocess` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli.main import EXIT_ERROR, EXIT_OK, main
from tests.core.test_preprocess_check import ARCH
from tests.core.test_preprocess_export import SPEC, small_cnn

INPUT = "x: float32[batch(1..8), 3, 16, 16]"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    (folder / "cnn_arch.py").write_text(ARCH)
    torch.save(small_cnn().state_dict(), folder / "weights.pt")
    return {"folder": folder, "arch": folder / "cnn_arch.py", "weights": folder / "weights.pt"}


@pytest.fixture(scope="module")
def baked_onnx(files: dict[str, Path]) -> Path:
    code = main(["export", str(files["weights"]), "--arch", f"{files['arch']}:build", "--input", INPUT,
                 "--preprocess", SPEC, "--bake-preprocess", "--onnx-exporter", "legacy", "--to", "onnx",
                 "--out-dir", str(files["folder"] / "out"), "--name", "cnn"])
    assert code == EXIT_OK
    return files["folder"] / "out" / "cnn.onnx"


def test_export_prints_the_raw_input_and_inspect_shows_the_spec(baked_onnx, capsys) -> None:
    assert main(["inspect", str(baked_onnx)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Preprocessing (baked into the graph: it takes raw pixels): image: scale 1/255, mean " \
           "0.485,0.456,0.406" in out.replace("\n", "")
    assert main(["inspect", str(baked_onnx), "--json"]) == EXIT_OK
    record = json.loads(capsys.readouterr().out)["preprocess"]
    assert record["baked"] is True and record["layout"] == "nhwc" and record["dtype"] == "uint8"


def test_export_summary_names_the_raw_input(files, capsys, tmp_path) -> None:
    code = main(["export", str(files["weights"]), "--arch", f"{files['arch']}:build", "--input", INPUT,
                 "--preprocess", SPEC, "--bake-preprocess", "--onnx-exporter", "legacy", "--to", "onnx",
                 "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "baked in: the artefacts take raw pixels (x: uint8[batch(1..8), 16, 16, 3] in 0..255)" in out


def test_check_preprocess_ranks_the_skews(baked_onnx, files, capsys) -> None:
    code = main(["check", "preprocess", str(baked_onnx), "--reference", f"{files['arch']}:build",
                 "--weights", str(files["weights"]), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and result["passed"] and result["max_abs_diff"] <= 1e-4
    names = [s["name"] for s in result["skews"]]
    assert names.index("no /255") < names.index("antialias off")
    assert main(["check", "preprocess", str(baked_onnx)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "pipelines match" in out and "no /255" in out.split("most noticeable first")[1]


def test_check_preprocess_on_an_image_folder_and_a_wrong_declaration(baked_onnx, files, capsys) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow is an optional extra for image folders")
    images = files["folder"] / "images"
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(2):
        pil.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    wrong = "image: scale 1/255, layout nhwc, uint8, bgr"  # the mean/std forgotten
    code = main(["check", "preprocess", str(baked_onnx), "--images", str(images), "--preprocess", wrong])
    out = capsys.readouterr().out
    assert code == 1 and "2 folder image(s) at 16x16: pipelines DIFFER" in out


@pytest.mark.parametrize(("argv", "words"), [
    (["--preprocess", "image: mean 0.5,0.5", "--bake-preprocess"], "mean has 2 values but the image has 3"),
    (["--preprocess", "image: layout nchw, resize 64"], "resize 64 fits neither the height"),
    (["--bake-preprocess"], "needs a preprocessing spec"),
])
def test_bad_preprocessing_is_one_sentence(files, capsys, tmp_path, argv, words) -> None:
    code = main(["export", str(files["weights"]), "--arch", f"{files['arch']}:build", "--input", INPUT,
                 "--to", "onnx", "--out-dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_check_parity_of_the_model_against_its_baked_artefact(baked_onnx, files, capsys) -> None:
    code = main(["check", "parity", f"{files['arch']}:build", str(baked_onnx), "--weights",
                 str(files["weights"]), "--shapes", "batch=1", "batch=8", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and result["passed"]
    assert "fed the recorded preprocessing of raw pixels" in result["reference"]["name"]
    assert result["settings"]["inputs"].startswith("x: uint8[")

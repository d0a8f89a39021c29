"""Architecture sources -> nn.Module, and loading weights with a strict-load report."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from core.arch import expected_keys, load_architecture, load_weights, source_kind
from core.errors import ExportError
from core.formats import open_checkpoint
from tests.fixtures.models import TinyNet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CNN = "tests.fixtures.export_models:cnn"


def test_module_callable_with_kwargs_builds_in_eval_mode():
    model = load_architecture(CNN, {"channels": 6})
    assert model.conv.out_channels == 6 and not model.training
    assert source_kind(CNN) == "callable"


def test_search_path_is_appended_only_while_loading():
    before = list(sys.path)
    model = load_architecture("export_models:mlp", search_path=FIXTURES)
    assert type(model).__name__ == "MLP" and sys.path == before


def test_python_file_and_callable(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\n\ndef build(width=3):\n    return nn.Linear(width, 2)\n")
    model = load_architecture(f"{path}:build", {"width": 5})
    assert model.in_features == 5 and source_kind(f"{path}:build") == "file"
    with pytest.raises(ExportError, match="Name the function or class"):
        load_architecture(str(tmp_path / "other.py"))


@pytest.mark.parametrize(("source", "words"), [
    ("tests.fixtures.export_models:resnet", "has no 'resnet'"),
    ("no_such_package.models:build", "could not be found"),
    ("tests.fixtures.export_models:broken", "Building the model"),
    ("tests.fixtures.export_models:SPECS", "not something to call"),
    ("json:dumps", "not a torch nn.Module"),
    ("plain words", "not an architecture source"),
    ("missing/model.pt", "does not exist"),
])
def test_bad_callables(source, words):
    with pytest.raises(ExportError) as info:
        load_architecture(source, {"obj": 1} if source == "json:dumps" else None)
    assert words in info.value.message


def test_missing_callable_lists_what_is_there():
    with pytest.raises(ExportError) as info:
        load_architecture("tests.fixtures.export_models:resnet")
    assert "cnn" in info.value.details and "lstm" in info.value.details


def test_import_error_in_the_users_module(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import torch\nraise RuntimeError('boom at import')\n")
    with pytest.raises(ExportError) as info:
        load_architecture(f"{path}:build")
    assert "Importing" in info.value.message and "boom at import" in info.value.details


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None,
                    reason="transformers is installed")
def test_hugging_face_folder_needs_transformers(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(ExportError, match="needs the 'transformers' package"):
        load_architecture(str(tmp_path))


@pytest.mark.parametrize("key", ["torchscript", "pt2", "full_module"])
def test_saved_programs_load_only_with_trust(files, key, marker):
    with pytest.raises(ExportError, match="--trust"):
        load_architecture(str(files[key]))
    model = load_architecture(str(files[key]), trust=True)
    x = torch.randn(1, 3, 8, 8)  # the fixture programs were saved for batch 1
    with torch.no_grad():
        assert torch.allclose(model(x), files.model(x), atol=1e-6)
    assert not marker.exists()


def test_a_weights_file_is_not_an_architecture(files):
    with pytest.raises(ExportError, match="weights only"):
        load_architecture(str(files["state_dict"]), trust=True)


def test_load_weights_fills_the_model(files):
    model = TinyNet()
    report = load_weights(model, open_checkpoint(files["state_dict"]))
    assert report.ok and report.loaded == len(files.model.state_dict())
    assert not report.missing and not report.unexpected and not model.training
    for name, tensor in torch.load(files["state_dict"], weights_only=True).items():
        assert torch.equal(model.state_dict()[name], tensor), name


@pytest.mark.parametrize(("key", "prefix"), [("lightning", "model."), ("data_parallel", "module.")])
def test_common_prefix_is_stripped_and_reported(files, key, prefix):
    report = load_weights(TinyNet(), open_checkpoint(files[key]))
    assert report.ok and report.prefix_stripped == prefix and not report.missing


def test_added_prefix_when_the_model_wraps_the_network(files):
    wrapper = torch.nn.Sequential()
    wrapper.add_module("model", TinyNet())
    report = load_weights(wrapper, open_checkpoint(files["state_dict"]))
    assert report.ok and report.prefix_added == "model."


def test_tied_weight_missing_from_safetensors_is_reported_as_tied(files):
    report = load_weights(TinyNet(), open_checkpoint(files["safetensors"]))
    assert report.missing == ["head.weight"] and report.tied == {"head.weight": "embed.weight"}
    assert report.ok


def _strict_torch_error(state: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    with pytest.raises(RuntimeError) as info:
        TinyNet().load_state_dict(state, strict=True)
    text = str(info.value)

    def names(label: str) -> set[str]:
        found = re.search(label + r" key\(s\) in state_dict: (.*?)\.\s*$", text, re.M)
        return set(re.findall(r'"([^"]+)"', found.group(1))) if found else set()

    return {"missing": names("Missing"), "unexpected": names("Unexpected"),
            "size": set(re.findall(r"size mismatch for ([\w.]+):", text))}


def test_report_lists_exactly_what_strict_load_state_dict_would(files, tmp_path):
    state = dict(files.model.state_dict())
    del state["fc.bias"], state["conv.weight"]
    state["fc.weight"] = torch.zeros(3, 4)
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "bad.pt")
    report = load_weights(TinyNet(), open_checkpoint(tmp_path / "bad.pt"))
    torch_says = _strict_torch_error(state)
    assert set(report.missing) == torch_says["missing"] == {"fc.bias", "conv.weight"}
    assert set(report.unexpected) == torch_says["unexpected"] == {"extra.weight"}
    assert {m["name"] for m in report.size_mismatch} == torch_says["size"] == {"fc.weight"}
    assert report.size_mismatch[0] == {"name": "fc.weight", "checkpoint": [3, 4], "model": [8, 4]}
    assert not report.ok
    error = report.error()
    assert "do not fit" in error.message and "fc.bias" in error.details


def test_remap_renames_and_drops_before_matching(files):
    renames = {"fc.weight": "dense.weight"}
    report = load_weights(TinyNet(), open_checkpoint(files["state_dict"]), remap=renames)
    assert report.renamed == 1 and report.unexpected == ["dense.weight"]
    assert report.missing == ["fc.weight"]
    report = load_weights(TinyNet(), open_checkpoint(files["state_dict"]),
                          remap=lambda k: None if k.startswith("bn.") else k)
    # as torch: BatchNorm fills a missing num_batches_tracked itself (no version metadata)
    assert report.missing == ["bn.bias", "bn.running_mean", "bn.running_var", "bn.weight"]


def test_meta_build_reads_no_data_and_reports_keys(files, monkeypatch):
    model = load_architecture("tests.fixtures.models:TinyNet", meta=True)
    assert all(p.device.type == "meta" for p in model.parameters())
    keys = expected_keys(model)
    assert keys["conv.weight"] == ((4, 3, 3, 3), "float32")
    assert keys["bn.num_batches_tracked"] == ((), "int64")
    checkpoint = open_checkpoint(files["lightning"])
    monkeypatch.setattr(type(checkpoint), "read", lambda *a, **k: pytest.fail("read data"))
    report = load_weights(model, checkpoint)
    assert report.dry_run and report.ok and report.prefix_stripped == "model."

"""Layout detection on object trees as the readers hand them over (no file needed)."""

from __future__ import annotations

from pathlib import Path

from core.layout import build_sections, common_prefix
from core.model import BUFFER, PARAMETER, UNKNOWN, Opaque, Storage, TensorInfo


def t(shape: tuple[int, ...] = (2, 2), dtype: str = "float32") -> TensorInfo:
    nbytes = 4 * max(1, len(shape))
    return TensorInfo("", shape, dtype, Storage(Path("x"), "k", 0, nbytes, dtype))


def state_dict(prefix: str = "") -> dict[str, TensorInfo]:
    return {f"{prefix}fc.weight": t((3, 4)), f"{prefix}fc.bias": t((3,)),
            f"{prefix}bn.running_mean": t((3,)), f"{prefix}bn.num_batches_tracked": t((), "int64")}


def test_flat_state_dict_is_one_model_section_with_roles() -> None:
    sections, weights = build_sections(state_dict())
    assert weights == "model" and list(sections) == ["model"]
    tensors = sections["model"].tensors
    assert list(tensors) == ["fc.weight", "fc.bias", "bn.running_mean", "bn.num_batches_tracked"]
    assert tensors["fc.weight"].name == "fc.weight"
    assert tensors["fc.weight"].role == PARAMETER
    assert tensors["bn.running_mean"].role == BUFFER
    assert tensors["bn.num_batches_tracked"].role == BUFFER


def test_training_checkpoint_splits_model_optimizer_and_values() -> None:
    tree = {"model_state_dict": state_dict(),
            "optimizer_state_dict": {"state": {0: {"step": t((), "float32"), "exp_avg": t((3, 4))}},
                                     "param_groups": [{"lr": 0.1, "params": [0]}]},
            "epoch": 3, "loss": 0.25}
    sections, weights = build_sections(tree)
    assert weights == "model"
    assert set(sections) == {"model", "optimizer", "training"}
    assert sections["training"].values == {"epoch": 3, "loss": 0.25}
    opt = sections["optimizer"]
    assert set(opt.tensors) == {"state.0.step", "state.0.exp_avg"}
    assert opt.values == {"param_groups": [{"lr": 0.1, "params": [0]}]}
    assert all(x.role == UNKNOWN for x in opt.tensors.values())
    assert sections["model"].source_path == "model_state_dict"


def test_lightning_prefix_and_hyper_parameters() -> None:
    tree = {"state_dict": state_dict("model."), "epoch": 5, "global_step": 1200,
            "hyper_parameters": {"lr": 0.001}, "optimizer_states": [], "lr_schedulers": []}
    sections, weights = build_sections(tree)
    assert weights == "model"
    assert sections["model"].common_prefix == "model."
    assert sections["training"].values["hyper_parameters"] == {"lr": 0.001}


def test_ema_is_its_own_section_and_model_is_preferred() -> None:
    sections, weights = build_sections({"ema": state_dict(), "model": state_dict(), "step": 1})
    assert weights == "model" and {"model", "ema", "training"} <= set(sections)
    sections, weights = build_sections({"model_ema": state_dict(), "epoch": 1})
    assert weights == "ema"


def test_data_parallel_prefix_detected() -> None:
    sections, _ = build_sections(state_dict("module."))
    assert sections["model"].common_prefix == "module."
    assert common_prefix(["module._orig_mod.a.b", "module._orig_mod.c"]) == "module._orig_mod."
    assert common_prefix(["encoder_x.a", "encoder_x.b"]) == ""


def test_pickled_module_is_flattened_with_roles_from_the_module() -> None:
    linear = Opaque("torch.nn.modules.linear.Linear",
                    state={"_parameters": {"weight": t((3, 4)), "bias": None},
                           "_buffers": {}, "_modules": {}})
    bn = Opaque("torch.nn.modules.batchnorm.BatchNorm1d",
                state={"_parameters": {"weight": t((3,))},
                       "_buffers": {"running_mean": t((3,)), "num_batches_tracked": t((), "int64")},
                       "_modules": {}})
    net = Opaque("__main__.Net", state={"_parameters": {}, "_buffers": {},
                                        "_modules": {"fc": linear, "bn": bn}, "training": False})
    sections, weights = build_sections(net)
    tensors = sections["model"].tensors
    assert list(tensors) == ["fc.weight", "bn.weight", "bn.running_mean", "bn.num_batches_tracked"]
    assert tensors["bn.running_mean"].role == BUFFER
    assert tensors["fc.weight"].role == PARAMETER


def test_deeply_nested_tree_does_not_recurse() -> None:
    tree: object = t()
    for _ in range(50_000):
        tree = [tree]
    sections, _ = build_sections({"model": tree})
    assert len(sections["model"].tensors) == 1

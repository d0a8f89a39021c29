"""`check preprocess`: does the artefact see what the declared preprocessing makes, and which
preprocessing mistakes would its outputs notice?

    result = check_preprocess(artefact_runner, declared=None, recorded=spec_in_file,
                              reference=eager_runner_or_None, images=None)

Pipeline: every image goes through the declared spec to the model's float NCHW input, run by the
reference (a model that takes normalised input: `reference`, else the artefact itself), and
through the artefact's own recorded pipeline (raw pixels when baked); the outputs are compared.

Skews: the declared pipeline with one common mistake (no /255, BGR for RGB, antialias flipped,
no mean/std, NHWC memory read as NCHW, height and width swapped); each is run and its outputs
compared with the correct ones, ranked by relative change ||y' - y|| / ||y||. A baked artefact
gets the raw pixels that would produce the mistaken input (core.checks.preprocess_pipeline.to_raw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from core.checks.preprocess_pipeline import generated_images, model_input, raw_pixels, to_raw
from core.errors import CheckFailed
from core.inputs.preprocess import Preprocess
from core.progress import Progress, step
from core.runtime.base import Runner

if TYPE_CHECKING:  # pragma: no cover
    import torch

GENERATED = 8


@dataclass
class SkewResult:
    name: str
    description: str
    relative_change: float  # mean over images of ||y' - y|| / ||y||
    max_abs_diff: float
    top1_changed: float | None = None  # share of images whose arg-max class changes (2-D outputs)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PreprocessCheckResult:
    """`bool(result)` is True when the artefact's pipeline matches the declared one."""

    declared: dict[str, Any]
    recorded: dict[str, Any] | None
    images: int
    image_source: str  # the folder, or "generated"
    target: tuple[int, int]
    max_abs_diff: float
    relative_diff: float
    tolerance: float
    skews: list[SkewResult] = field(default_factory=list)  # most noticeable first
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"declared": self.declared, "recorded": self.recorded, "images": self.images,
                "image_source": self.image_source, "target": list(self.target),
                "max_abs_diff": self.max_abs_diff, "relative_diff": self.relative_diff,
                "tolerance": self.tolerance, "passed": self.passed, "notes": self.notes,
                "skews": [s.to_dict() for s in self.skews]}


def check_preprocess(artefact: Runner, declared: Preprocess | None, recorded: Preprocess | None,
                     reference: Runner | None = None, images: list[torch.Tensor] | None = None,
                     target: tuple[int, int] | None = None, atol: float = 1e-4,
                     progress: Progress | None = None) -> PreprocessCheckResult:
    """Compare the declared pipeline with the artefact's, then measure the skews (see the module
    docstring). `images` are uint8 [H, W, C] tensors (default: generated ones)."""
    spec = declared or recorded
    if spec is None:
        raise CheckFailed("The artefact records no preprocessing; declare it with --preprocess, "
                          "e.g. 'image: scale 1/255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225'.")
    if spec.kind != "image" or (recorded is not None and recorded.kind != "image"):
        raise CheckFailed("The preprocessing check runs images; text preprocessing is recorded only.")
    baked = recorded is not None and recorded.baked
    size = target or spec.output_size() or _runner_size(artefact, recorded)
    notes: list[str] = []
    if images is None:  # twice the model's size, so resizing (and antialias) matters
        images = generated_images(GENERATED, (size[0] * 2, size[1] * 2), spec.channels)
        source = "generated"
    else:
        source = "folder"
    normalised = _normalised_runner(artefact, reference, recorded if baked else None)
    if baked and reference is None:
        notes.append("The artefact has the preprocessing baked in and no reference model was "
                     "given, so skews are fed to it as the raw pixels that would produce them"
                     + ("; uint8 pixels clip at 0 and 255, which understates mistakes that push "
                        "values past them (no /255): give --reference for their full size."
                        if recorded.dtype == "uint8" else "."))
    declared_out = [normalised(model_input(img, spec, size)) for img in images]
    own = recorded or spec
    own_out = [_run(artefact, raw_pixels(img, own, size) if baked else model_input(img, own, size))
               for img in images]
    worst, rel = _compare(declared_out, own_out)
    scale = max(float(np.abs(y).max()) for y in declared_out)
    skews = []
    planned = skew_list(spec, images, size)
    for done, (name, description, make) in enumerate(planned):
        step(progress, done, len(planned), name)
        moved = [normalised(make(img)) for img in images]
        skews.append(_skew(name, description, declared_out, moved))
    skews.sort(key=lambda s: -s.relative_change)
    return PreprocessCheckResult(spec.to_dict(), recorded.to_dict() if recorded else None,
                                 len(images), source, size, worst, rel, atol + 1e-4 * scale,
                                 skews, notes)


def _runner_size(runner: Runner, recorded: Preprocess | None) -> tuple[int, int]:
    shapes = getattr(runner, "input_shapes", None) or {}
    shape = next(iter(shapes.values()), None)
    nhwc = recorded is not None and recorded.baked and recorded.layout == "nhwc"
    if shape is not None and len(shape) == 4:
        h, w = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            return (h, w)
    raise CheckFailed("The image size the model takes is unknown; give it with --size HxW or a "
                      "crop/resize in the preprocessing spec.")


def _normalised_runner(artefact: Runner, reference: Runner | None,
                       baked: Preprocess | None) -> Callable[[torch.Tensor], list[np.ndarray]]:
    """Something that runs a model input (float NCHW): the reference, a plain artefact, or a baked
    artefact fed the raw pixels that make it."""
    if reference is not None:
        return lambda x: _run(reference, x)
    if baked is not None:
        return lambda x: _run(artefact, to_raw(x, baked))
    return lambda x: _run(artefact, x)


def _run(runner: Runner, x: torch.Tensor) -> list[np.ndarray]:
    outputs = runner.run({runner.input_names[0]: x.numpy()})
    return [np.asarray(v, dtype=np.float64) for v in outputs.values()]


def skew_list(spec: Preprocess, images: list[torch.Tensor],
              size: tuple[int, int]) -> list[tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]]:
    """(name, what it models, image -> mistaken model input) for the mistakes that apply."""
    def with_spec(other: Preprocess) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda img: model_input(img, other, size)

    def correct(img: torch.Tensor) -> torch.Tensor:
        return model_input(img, spec, size)

    skews = []
    if spec.scale != 1:
        skews.append(("no /255", f"pixels not multiplied by {spec.scale_text}",
                      with_spec(replace(spec, scale=1.0, scale_text="1"))))
    if spec.channels == 3:
        other = "rgb" if spec.channel_order == "bgr" else "bgr"
        skews.append((f"{other.upper()} vs {spec.channel_order.upper()}",
                      "channels fed in the reverse order", with_spec(replace(spec, channel_order=other))))
    if any((img.shape[0], img.shape[1]) != size for img in images):
        state = "off" if spec.antialias else "on"
        skews.append((f"antialias {state}", f"resizing with antialias {state}",
                      with_spec(replace(spec, antialias=not spec.antialias))))
    if spec.mean or spec.std:
        skews.append(("no mean/std", "pixels not normalised with the mean and std",
                      with_spec(replace(spec, mean=(), std=()))))
    skews.append(("NHWC read as NCHW", "image memory (H, W, C) read as (C, H, W)",
                  lambda img: correct(img).permute(0, 2, 3, 1).reshape(correct(img).shape)))
    if size[0] == size[1]:
        skews.append(("height/width swapped", "NCHW fed as NCWH (a transpose too many)",
                      lambda img: correct(img).transpose(2, 3)))
    return skews


def _compare(expected: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> tuple[float, float]:
    worst, rel = 0.0, []
    for a_outs, b_outs in zip(expected, got, strict=True):
        if [a.shape for a in a_outs] != [b.shape for b in b_outs]:
            raise CheckFailed("The artefact gives outputs of other shapes than the reference.")
        for a, b in zip(a_outs, b_outs, strict=True):
            worst = max(worst, float(np.abs(a - b).max()) if a.size else 0.0)
            rel.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12)))
    return worst, float(np.mean(rel)) if rel else 0.0


def _skew(name: str, description: str, correct: list[list[np.ndarray]],
          moved: list[list[np.ndarray]]) -> SkewResult:
    worst, rel = _compare(correct, moved)
    first = [(c[0], m[0]) for c, m in zip(correct, moved, strict=True) if c[0].ndim == 2
             and c[0].shape[1] > 1]
    top1 = float(np.mean([np.mean(c.argmax(1) != m.argmax(1)) for c, m in first])) if first else None
    return SkewResult(name, description, rel, worst, top1)

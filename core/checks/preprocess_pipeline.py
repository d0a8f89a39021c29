"""Images through a preprocessing spec: decoding (Pillow), generated images, resize and centre crop
(torch.nn.functional.interpolate, bilinear, with or without antialias), raw pixels and model input.

An image here is a uint8 tensor [height, width, channels], RGB, as decoders give it. `raw_pixels`
makes what a service feeds (the spec's dtype and layout, batch of one); `model_input` the model's
float32 NCHW input (core.export.preprocess.normalise of the raw pixels, exactly the baked ops);
`to_raw` the raw pixels a baked artefact needs to see a given model input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import CheckFailed
from core.export.preprocess import normalise
from core.inputs.preprocess import Preprocess

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_IMAGES = 256
MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs before decoding


def load_images(folder: str | Path, channels: int = 3, limit: int = 32) -> list[torch.Tensor]:
    """The first `limit` images of `folder` (sorted by name) as uint8 [H, W, C] tensors."""
    import numpy as np
    import torch

    try:
        from PIL import Image
    except ImportError:
        raise CheckFailed("Reading image files needs Pillow, which is not installed; install it "
                          "(pip install pillow) or leave out --images to use generated images.") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckFailed(f"The image folder '{folder}' does not exist.")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CheckFailed(f"The folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...).")
    images = []
    for path in paths[:min(limit, MAX_IMAGES)]:
        try:
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise CheckFailed(f"The image '{path.name}' is too large to check "
                                      f"({img.width}x{img.height}).")
                pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(f"The image '{path.name}' could not be read; it may be damaged.",
                              f"{type(exc).__name__}: {exc}") from None
        images.append(torch.from_numpy(pixels.reshape(pixels.shape[0], pixels.shape[1], -1).copy()))
    return images


def generated_images(count: int, size: tuple[int, int], channels: int = 3,
                     seed: int = 0) -> list[torch.Tensor]:
    """Seeded photo-like images: smooth colour fields plus fine texture (so resizing with or
    without antialias differs, as it does on photos)."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        coarse = torch.rand((1, channels, 6, 6), generator=gen) * 255
        smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
        texture = (torch.rand((1, channels, *size), generator=gen) - 0.5) * 80
        image = (smooth + texture).clamp(0, 255).round().to(torch.uint8)
        images.append(image[0].permute(1, 2, 0).contiguous())
    return images


def resized(image: torch.Tensor, spec: Preprocess, target: tuple[int, int]) -> torch.Tensor:
    """[1, C, H, W] float pixels (0..255, not rounded) after the spec's resize and centre crop; an
    image whose result is not `target` is resized to it directly."""
    import torch.nn.functional as F

    x = image.permute(2, 0, 1).unsqueeze(0).float()
    height, width = x.shape[2], x.shape[3]
    if spec.resize:
        if len(spec.resize) == 2:
            size = (spec.resize[0], spec.resize[1])
        else:  # the shorter side becomes resize[0], keeping the aspect ratio (as torchvision)
            short, long = sorted((height, width))
            other = int(spec.resize[0] * long / short)
            size = (spec.resize[0], other) if height <= width else (other, spec.resize[0])
        x = _resize(x, size, spec.antialias)
    if spec.crop:
        top = (x.shape[2] - spec.crop[0]) // 2
        left = (x.shape[3] - spec.crop[1]) // 2
        x = x[:, :, max(top, 0):max(top, 0) + spec.crop[0], max(left, 0):max(left, 0) + spec.crop[1]]
    if (x.shape[2], x.shape[3]) != tuple(target):
        x = _resize(x, target, spec.antialias)
    return F.relu(x).clamp(max=255.0)


def _resize(x: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    import torch.nn.functional as F

    if (x.shape[2], x.shape[3]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def raw_pixels(image: torch.Tensor, spec: Preprocess, target: tuple[int, int]) -> torch.Tensor:
    """What a service following `spec` feeds: [1, C, H, W] or [1, H, W, C] in the spec's dtype."""
    import torch

    x = resized(image, spec, target)  # float32 pixels stay 0..255, unrounded
    if spec.dtype == "uint8":
        x = x.round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous() if spec.layout == "nhwc" else x


def model_input(image: torch.Tensor, spec: Preprocess, target: tuple[int, int]) -> torch.Tensor:
    """The model's float32 NCHW input for `image` under `spec`."""
    return normalise(raw_pixels(image, spec, target), spec)


def to_raw(x: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """Raw pixels that a graph with `spec` baked in turns into model input `x` (uint8 pixels are
    rounded and clipped to 0..255, as a real feed would be)."""
    import torch

    shape = (1, spec.channels, 1, 1)
    mean = torch.tensor(spec.means(), dtype=torch.float32).reshape(shape)
    std = torch.tensor(spec.stds(), dtype=torch.float32).reshape(shape)
    pixels = x * std + mean
    if spec.channel_order == "bgr":
        pixels = pixels.index_select(1, torch.tensor([2, 1, 0]))
    pixels = pixels / spec.scale
    if spec.dtype == "uint8":
        pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous() if spec.layout == "nhwc" else pixels

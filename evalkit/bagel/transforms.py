"""Image pre/post-processing with BAGEL's exact size rule and pixel conversions.

The size rule scales the image so its long edge is at most `max_size` and its short edge at least
`min_size`, then snaps each side to a multiple of `stride` using Python's `round` (banker's rounding,
as the official code does). Resizing is PIL bicubic (what torchvision does for PIL inputs, antialiased).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def _snap(value: float, stride: int) -> int:
    return max(stride, int(round(value / stride) * stride))


def _scaled(width: int, height: int, scale: float, stride: int) -> tuple[int, int]:
    return _snap(round(width * scale), stride), _snap(round(height * scale), stride)


def target_size(
    width: int, height: int, max_size: int, min_size: int, stride: int, max_pixels: int
) -> tuple[int, int]:
    """(width, height) after BAGEL's long-edge / short-edge / pixel-budget rule."""
    scale = min(max_size / max(width, height), 1.0)
    scale = max(scale, min_size / min(width, height))
    w, h = _scaled(width, height, scale, stride)
    if w * h > max_pixels:
        w, h = _scaled(w, h, max_pixels / (w * h), stride)
    if max(w, h) > max_size:
        w, h = _scaled(w, h, max_size / max(w, h), stride)
    return w, h


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing transparency onto white."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def resize(image: Image.Image, spec: tuple[int, int, int], max_pixels: int) -> Image.Image:
    w, h = target_size(*image.size, *spec, max_pixels=max_pixels)
    if (w, h) == image.size:
        return image.copy()
    return image.resize((w, h), Image.Resampling.BICUBIC)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 RGB -> [3, H, W] float32 in [-1, 1] (mean = std = 0.5)."""
    array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (array - 0.5) / 0.5


def to_pil(decoded: torch.Tensor) -> Image.Image:
    """Decoder output [3, H, W] in [-1, 1] -> PIL; the uint8 cast truncates, like the official code."""
    pixels = ((decoded.float() * 0.5 + 0.5).clamp(0, 1) * 255).permute(1, 2, 0)
    return Image.fromarray(pixels.to(torch.uint8).cpu().numpy())


def float_pixels(decoded: torch.Tensor) -> torch.Tensor:
    """The float [H, W, 3] image in 0..255 before the uint8 cast (for parity checks)."""
    return ((decoded.float() * 0.5 + 0.5).clamp(0, 1) * 255).permute(1, 2, 0)

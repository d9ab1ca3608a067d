"""A toy reward in one file: the scorer and the builder a registry line (or entry point) points at."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


def warmth(image: Image.Image) -> float:
    """Mean of red minus blue, in [-1, 1]."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return float((rgb[..., 0] - rgb[..., 2]).mean() / 255.0)


class WarmthScorer:
    name = "toy-warmth"

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]:
        return [warmth(image) for image in images]


def build(options: dict[str, Any], judge: Any = None) -> WarmthScorer:
    if options:
        raise ValueError(f"toy-warmth takes no options, got {sorted(options)}")
    return WarmthScorer()

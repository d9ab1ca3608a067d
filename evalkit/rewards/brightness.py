"""Mean brightness: a trivial, instant reward for trainer checks (does GRPO move the policy at all?)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


class BrightnessScorer:
    """Mean luminance (ITU-R 601 "L" conversion) in [0, 1]. Not a quality metric."""

    name = "brightness"

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]:
        return [float(np.asarray(img.convert("L"), dtype=np.float64).mean() / 255.0) for img in images]

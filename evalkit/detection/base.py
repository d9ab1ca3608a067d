"""Detector output in the layout GenEval's rules expect: per class, boxes [x1, y1, x2, y2, score] and masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image


@dataclass
class ClassDetections:
    boxes: np.ndarray  # (n, 5) float: x1, y1, x2, y2, score (in detector order, unsorted)
    masks: list[np.ndarray] | None  # n boolean (H, W) masks, or None for box-only detectors


ImageDetections = dict[str, ClassDetections]  # class name -> detections (absent classes omitted)


class Detector(Protocol):
    classnames: list[str]

    def config(self) -> dict[str, Any]: ...

    def detect(self, images: list[Image.Image]) -> list[ImageDetections]: ...

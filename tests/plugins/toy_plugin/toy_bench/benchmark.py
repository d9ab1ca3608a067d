"""Toy benchmark: three prompts, each image scored by its mean red channel, the table shows the mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer

PROMPTS = ("a red apple", "a blue sky", "a green field")


def redness(image: Image.Image) -> float:
    """Mean red channel in [0, 1]."""
    return float(np.asarray(image.convert("RGB"), dtype=np.float64)[..., 0].mean() / 255.0)


class RednessScorer(SampleScorer):
    def config(self) -> dict[str, Any]:
        return {"metric": "mean red channel"}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        return [{"redness": redness(image)} for image in images]


class ToyBench(Benchmark):
    name = "toy"
    columns = ["Redness"]

    def __init__(self, data_dir: Path, protocol: str = "toy"):
        self.protocol = protocol

    def samples(self) -> list[Sample]:
        return [Sample(id=f"{i:02d}", prompt=prompt) for i, prompt in enumerate(PROMPTS)]

    def make_scorer(self, **options: Any) -> RednessScorer:
        return RednessScorer()

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        values = [r["redness"] for r in records]
        return {
            "table": {"Redness": sum(values) / len(values) if values else None},
            "n_records": len(records),
        }

"""Several Scorers combined into one GRPO reward: a weighted sum of raw scores, each logged on its own.

A sample for which any weighted scorer abstains (`None`, e.g. a judge reply that could not be parsed) gets
no total reward; the trainer masks it instead of treating it as a low score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from evalkit.rewards.base import Scorer


class WeightedReward:
    def __init__(self, scorers: Mapping[str, Scorer], weights: Mapping[str, float]):
        missing = sorted(set(weights) - set(scorers))
        if missing:
            raise KeyError(f"no scorer given for rewards {missing}")
        self.scorers = {name: scorers[name] for name in weights}
        self.weights = dict(weights)

    def __call__(
        self, images: list[Image.Image], prompts: Sequence[str], metadata: Sequence[dict[str, Any]]
    ) -> tuple[list[float | None], dict[str, list[float | None]]]:
        details: dict[str, list[float | None]] = {}
        for name, scorer in self.scorers.items():
            scores = scorer.score(images, list(prompts), list(metadata))
            if len(scores) != len(images):
                raise ValueError(f"scorer {name!r} returned {len(scores)} scores for {len(images)} images")
            details[name] = [None if s is None or not math.isfinite(s) else float(s) for s in scores]
        totals: list[float | None] = []
        for i in range(len(images)):
            parts = [details[name][i] for name in self.scorers]
            if any(p is None for p in parts):
                totals.append(None)
            else:
                totals.append(sum(self.weights[n] * p for n, p in zip(self.scorers, parts, strict=True)))
        return totals, details

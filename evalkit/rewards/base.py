"""The Scorer interface: benchmark metrics and GRPO rewards are the same objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Scorer(Protocol):
    """Scores images against their prompts. `None` means the scorer abstains (e.g. a judge failure)."""

    name: str

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]: ...


def score_in_batches(
    score_batch: Callable[[list[Image.Image], list[str]], list[float | None]],
    images: list[Image.Image],
    prompts: list[str],
    batch_size: int,
) -> list[float | None]:
    """Run a model's batch scorer over any number of (image, prompt) pairs."""
    if len(images) != len(prompts):
        raise ValueError("images and prompts must have the same length")
    out: list[float | None] = []
    for start in range(0, len(images), batch_size):
        out.extend(score_batch(images[start : start + batch_size], prompts[start : start + batch_size]))
    return out

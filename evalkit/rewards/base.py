"""The Scorer interface: benchmark metrics and GRPO rewards are the same objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from evalkit.judges.base import judge_map
from evalkit.judges.messages import image_sha256


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


def judge_each_image(
    judge: Any,
    score_one: Callable[[Image.Image, str, list[str]], float | None],
    images: list[Image.Image],
    prompts: list[str],
    workers: int | None,
) -> tuple[list[float | None], list[str]]:
    """`score_one(image, prompt, failures)` for every pair, concurrently through `judge_map`; values and the
    failures each image noted, in the loop's order whatever the timing. The same image twice waits for the
    first, so a repeated request is served by the judge's cache as in a loop."""

    def one(pair: tuple[Image.Image, str]) -> tuple[float | None, list[str]]:
        failures: list[str] = []
        return score_one(*pair, failures), failures

    pairs = list(zip(images, prompts, strict=True))
    done = judge_map(judge, one, pairs, workers=workers, key=lambda pair: image_sha256(pair[0]))
    return [value for value, _ in done], [failure for _, failures in done for failure in failures]

"""The Scorer interface: benchmark metrics and GRPO rewards are the same objects."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Scorer(Protocol):
    """Scores images against their prompts. `None` means the scorer abstains (e.g. a judge failure)."""

    name: str

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]: ...

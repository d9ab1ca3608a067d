"""What every benchmark provides to the generate -> score -> report pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Sample:
    """One benchmark item; `id` is stable across runs and names its folder under samples/."""

    id: str
    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)
    input_image: Path | None = None


class SampleScorer(ABC):
    """Scores generated images of one benchmark. Heavy models load in the constructor, once."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the scores; hashed into every record."""

    @abstractmethod
    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        """One record per image (benchmark-specific fields); the pipeline adds ids and provenance."""

    def parallel_images(self) -> int:
        """How many images the pipeline should hand to one `score_images` call at least: a judged scorer
        scores them concurrently when its judge takes several requests at once (an HTTP judge)."""
        from evalkit.judges.base import parallel_requests

        return parallel_requests(getattr(self, "judge", None))


class Benchmark(ABC):
    """A benchmark under one protocol (prompts, judge, template, formula pinned by `protocol`)."""

    name: str
    protocol: str
    images_per_sample: int = 1
    needs_judge: bool = False  # scored by an MLLM judge: evaluate() refuses to start without one
    # The `--score-option` keys its scorer takes, checked (with did-you-mean) before any model loads;
    # None: the benchmark checks them itself in `scorer_config`.
    scorer_options: tuple[str, ...] | None = None
    columns: list[str]  # official table columns, in order, as shown in papers
    # The sampler settings of this benchmark's official eval scripts, per model family (a generator's
    # `family`, e.g. "bagel"): what differs from that model's plain text-to-image (or, for edit requests,
    # editing) settings. Sent with every request (`request_options`); --option values still override them.
    generation_presets: dict[str, dict[str, Any]] = {}

    @abstractmethod
    def samples(self) -> list[Sample]:
        """All samples of this protocol, in the official order."""

    def request_options(self, sample: Sample) -> dict[str, Any]:
        """Per-sample generator options the protocol fixes (e.g. think mode, the generation presets)."""
        return {"generation_presets": self.generation_presets} if self.generation_presets else {}

    def derived_names(self, sample: Sample) -> list[str]:
        """Files the protocol keeps next to a sample's images once all exist (DPG-Bench: its 2x2 grid)."""
        return []

    def derived_images(self, images: list[Image.Image]) -> dict[str, Image.Image]:
        """The derived files named by `derived_names`, made from the sample's images (k = 0, 1, ...)."""
        return {}

    def scorer_config(self, **options: Any) -> dict[str, Any]:
        """The scorer settings with defaults filled in; its hash keys the records (known before loading)."""
        self.check_scorer_options(options)
        return dict(options)

    def check_scorer_options(self, options: dict[str, Any]) -> None:
        """Refuse a scorer option this benchmark's scorer does not take, with the closest known one."""
        if self.scorer_options is None:
            return
        from evalkit.errors import did_you_mean

        for key in options:
            if key not in self.scorer_options:
                raise did_you_mean(f"{self.name} scorer option", key, list(self.scorer_options) or ["(none)"])

    @abstractmethod
    def make_scorer(self, **options: Any) -> SampleScorer:
        """Build the scorer (detector, judge...). Called only when there is something to score."""

    @abstractmethod
    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Official aggregation: {column: value, ...} plus counts; never drops failures silently."""

"""The Generator interface shared by every model adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass
class GenerationRequest:
    """One image to make: the prompt, its per-sample seed and size, and model options."""

    prompt: str
    seed: int
    height: int | None = None
    width: int | None = None
    input_image: Image.Image | None = None  # editing benchmarks
    options: dict[str, Any] = field(default_factory=dict)  # think, cfg, steps... (model specific)


@dataclass
class Generation:
    image: Image.Image
    think: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SelfCheck:
    """A model's own verdict on one of its images (SRR's self gate without a reward judge)."""

    score: float | None  # in [0, 1], 1 = the image meets the prompt; None = the model gave no verdict
    reflection: str | None = None  # what the model wrote about the image before its verdict
    answer: str | None = None  # the verdict as the model wrote it (kept even when it cannot be parsed)
    extra: dict[str, Any] = field(default_factory=dict)


class Generator:
    """Base class of every model adapter: turns requests into images; `config()` is what goes into run.json
    and the run's hash.

    What a model can do beyond text-to-image is declared here with safe defaults, and adapters that can
    do more say so; the pipeline refuses a benchmark (editing, thinking) or an SRR setting a generator
    does not declare before drawing anything, and the registry's `capabilities` probe tells it before
    the model even loads.
    """

    name: str = "generator"
    family: str | None = None  # the key of this model's entry in a benchmark's generation_presets
    supports_edit: bool = False  # takes GenerationRequest.input_image (GEdit-Bench)
    supports_think: bool = False  # honours options["think"]: writes its reasoning before drawing
    can_refine: bool = False  # refine(): redraws its own image from a reflection (SRR)
    can_self_check: bool = False  # self_check(): its own reward for an image (SRR's self gate)

    def config(self) -> dict[str, Any]:
        return {"model": self.name}

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation:
        """Redraw `image` after reflecting on how it fails `prompt` (only when `can_refine`)."""
        raise NotImplementedError(f"{self.name} cannot refine its images")

    def self_check(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> SelfCheck:
        """The model's own verdict on `image` under `prompt` (only when `can_self_check`); `seed` and
        `options` are those of the refinement it would lead to, so both can share one reflection."""
        raise NotImplementedError(f"{self.name} has no self check")

    @classmethod
    def declared(cls) -> dict[str, bool | None]:
        """The capabilities declared on the class, for registry probes (no model loaded)."""
        edit = cls.supports_edit if isinstance(cls.supports_edit, bool) else None  # a property: per instance
        return {"edit": edit, "think": cls.supports_think, "refine": cls.can_refine,
                "self_check": cls.can_self_check}  # fmt: skip


@dataclass
class ModelSpec:
    """What the CLI resolved `--model` to; registry factories take it and return a Generator."""

    name: str  # registry name, e.g. "sd35m", "tiny-sd3", "bagel"
    path: str | None = None  # hub id or local folder when the user gave one
    options: dict[str, Any] = field(default_factory=dict)  # --option key=value overrides
    device: str | None = None  # None = cuda:<LOCAL_RANK> if available, else cpu
    dtype: str | None = None  # None = the model's default (bf16 on GPU, fp32 on CPU)

"""The Generator interface shared by every model adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class Generator(Protocol):
    """Turns requests into images. `config()` is what goes into run.json and the run's hash."""

    name: str

    def config(self) -> dict[str, Any]: ...

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]: ...


@runtime_checkable
class Refiner(Protocol):
    """Unified models that can redraw their own image (self-reflective refinement)."""

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation: ...


@runtime_checkable
class Editor(Protocol):
    """Generators that accept an input image (GEdit-Bench)."""

    supports_edit: bool


@dataclass
class ModelSpec:
    """What the CLI resolved `--model` to; registry factories take it and return a Generator."""

    name: str  # registry name, e.g. "sd35m", "tiny-sd3", "bagel"
    path: str | None = None  # hub id or local folder when the user gave one
    options: dict[str, Any] = field(default_factory=dict)  # --option key=value overrides
    device: str | None = None  # None = cuda:<LOCAL_RANK> if available, else cpu
    dtype: str | None = None  # None = the model's default (bf16 on GPU, fp32 on CPU)

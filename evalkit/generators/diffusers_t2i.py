"""Any diffusers pipeline as a Generator: SD3.5-Medium, tiny-sd3, tiny-sd3-edit, or a hub id / local folder.

Each image gets its own torch.Generator seeded with its per-sample seed, so a batch gives the same images
as one-at-a-time generation and results do not depend on batch size or sharding.

Editing (GEdit-Bench): a generator `supports_edit` when it has a pipeline whose call takes an `image`
argument (img2img and instruction-edit pipelines). `tiny-sd3-edit` pairs the tiny SD3 text-to-image
pipeline with a `StableDiffusion3Img2ImgPipeline` over the same components; `diffusers:<id>` edits when
the loaded pipeline takes an image. Diffusers pipelines have no think mode: `think` is refused.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from evalkit.generators.base import Generation, GenerationRequest, Generator, ModelSpec
from evalkit.options import option, require_at_least_one

# Defaults per preset; every key is overridable with --option key=value.
PRESETS: dict[str, dict[str, Any]] = {
    "sd35m": {"height": 512, "width": 512, "num_inference_steps": 40, "guidance_scale": 4.5},
    "tiny-sd3": {
        "height": 64,
        "width": 64,
        "num_inference_steps": 4,
        "guidance_scale": 4.5,
        "max_sequence_length": 32,
    },
    "diffusers": {},
}
PRESETS["tiny-sd3-edit"] = {**PRESETS["tiny-sd3"], "strength": 0.6}
PIPELINE_KEYS = {
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "max_sequence_length",
    "true_cfg_scale",
}
EDIT_KEYS = {"strength", "image_guidance_scale"}  # passed to editing calls only
EDIT_PRESETS = {"tiny-sd3-edit"}


@dataclass
class DiffusersOptions:
    """`--option` keys of the diffusers models (None: the preset's value, else the pipeline's default)."""

    height: int | None = option(None, "image height in pixels (sd35m: 512)")
    width: int | None = option(None, "image width in pixels (sd35m: 512)")
    num_inference_steps: int | None = option(None, "sampling steps (sd35m: 40)")
    guidance_scale: float | None = option(None, "classifier-free guidance scale (sd35m: 4.5)")
    negative_prompt: str | None = option(None, "negative prompt for CFG")
    max_sequence_length: int | None = option(None, "T5 prompt tokens")
    true_cfg_scale: float | None = option(None, "true CFG scale (pipelines that take it)")
    strength: float | None = option(None, "editing: how far from the source image (img2img)")
    image_guidance_scale: float | None = option(None, "editing: image guidance (instruction-edit pipelines)")
    batch_size: int | None = option(None, "images per pipeline call (default 4; does not change images)")
    lora: str | None = option(None, "a LoRA folder to load (e.g. saved by `evalkit train`)")
    think: bool | None = option(None, "refused: diffusers pipelines have no think mode")

    def __post_init__(self) -> None:
        require_at_least_one(
            self, ("height", "width", "num_inference_steps", "max_sequence_length", "batch_size")
        )


THINK_ERROR = (
    "{model} is a diffusers pipeline and has no think mode; drop --think "
    "(thinking needs a unified model such as bagel)"
)


def _dtype(name: str | None, device: str):
    import torch

    if name is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    except KeyError:
        from evalkit.errors import EvalkitError

        raise EvalkitError(f"unknown dtype '{name}' (use bf16, fp16 or fp32)") from None


def takes_image(pipeline_or_class) -> bool:
    """Whether a pipeline's __call__ accepts an input `image` (img2img, instruction editing)."""
    import inspect

    call = pipeline_or_class.__call__
    return "image" in inspect.signature(call).parameters


def _call_parameters(pipe) -> set[str] | None:
    """Names the pipeline's __call__ accepts; None when it takes **kwargs (anything goes)."""
    import inspect

    params = inspect.signature(pipe.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


class DiffusersGenerator(Generator):
    """`pipe` draws from text; `edit_pipe` (if any, possibly the same object) draws from text + image."""

    supports_think = False

    def __init__(
        self,
        name: str,
        pipe,
        settings: dict[str, Any],
        source: str,
        batch_size: int = 4,
        edit_pipe=None,
        user_keys: frozenset[str] = frozenset(),
    ):
        self.name = name
        self.pipe = pipe
        self.edit_pipe = edit_pipe
        self.settings = settings
        self.source = source
        self.batch_size = batch_size
        self.user_keys = user_keys  # --option keys: refused, not dropped, when a call cannot take them

    @property
    def supports_edit(self) -> bool:
        return self.edit_pipe is not None

    def config(self) -> dict[str, Any]:
        config = {
            "adapter": "diffusers",
            "model": self.name,
            "source": self.source,
            "pipeline": type(self.pipe).__name__,
            "dtype": str(self.pipe.dtype),
            **self.settings,
        }
        if self.edit_pipe is not None:
            config["edit_pipeline"] = type(self.edit_pipe).__name__
        return config

    def _call_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        keys = PIPELINE_KEYS | (EDIT_KEYS if request.input_image is not None else set())
        kwargs = {k: v for k, v in self.settings.items() if k in keys}
        kwargs.update({k: v for k, v in request.options.items() if k in keys})
        kwargs["height"] = request.height or self.settings.get("height")
        kwargs["width"] = request.width or self.settings.get("width")
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if request.input_image is not None:
            accepted = _call_parameters(self.edit_pipe)
            if accepted is not None:
                # height/width are always honoured: the source image is resized to them (_input_image)
                refused = sorted(
                    k
                    for k in kwargs
                    if k not in accepted and k in self.user_keys and k not in ("height", "width")
                )
                if refused:
                    from evalkit.errors import EvalkitError

                    raise EvalkitError(
                        f"{type(self.edit_pipe).__name__} does not take option(s) {', '.join(refused)}"
                    )
                kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        return kwargs

    def _check(self, request: GenerationRequest) -> None:
        from evalkit.errors import EvalkitError

        if request.options.get("think"):
            raise EvalkitError(THINK_ERROR.format(model=self.name))
        if request.input_image is not None and self.edit_pipe is None:
            raise EvalkitError(
                f"{self.name} ({type(self.pipe).__name__}) cannot edit images: its pipeline takes no `image`"
            )

    def _edit_size(self, request: GenerationRequest) -> tuple[int, int]:
        """(width, height) of the image to edit: the requested or preset size, else the source's own."""
        width = request.width or self.settings.get("width")
        height = request.height or self.settings.get("height")
        return (width, height) if width and height else request.input_image.size

    def _input_image(self, request: GenerationRequest):
        image = request.input_image.convert("RGB")
        size = self._edit_size(request)
        return image if image.size == size else image.resize(size)

    def _batch_key(self, request: GenerationRequest):
        edit = request.input_image is not None
        return self._call_kwargs(request), edit, self._edit_size(request) if edit else None

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Requests with equal settings are batched; each keeps its own seeded torch.Generator."""
        import torch

        for request in requests:
            self._check(request)
        out: list[Generation] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            key = self._batch_key(chunk[0])
            if any(self._batch_key(r) != key for r in chunk):
                out.extend(g for r in chunk for g in self.generate_one(r))
                continue
            kwargs, edit, _ = key
            pipe = self.edit_pipe if edit else self.pipe
            if edit:
                kwargs = {**kwargs, "image": [self._input_image(r) for r in chunk]}
            gens = [torch.Generator(device="cpu").manual_seed(r.seed) for r in chunk]
            t0 = time.perf_counter()
            images = pipe(prompt=[r.prompt for r in chunk], generator=gens, **kwargs).images
            per = (time.perf_counter() - t0) / len(chunk)
            out.extend(Generation(image=im, seconds=per) for im in images)
        return out

    def generate_one(self, request: GenerationRequest) -> list[Generation]:
        import torch

        self._check(request)
        t0 = time.perf_counter()
        kwargs = self._call_kwargs(request)
        pipe = self.pipe
        if request.input_image is not None:
            pipe, kwargs = self.edit_pipe, {**kwargs, "image": [self._input_image(request)]}
        gen = torch.Generator(device="cpu").manual_seed(request.seed)
        image = pipe(prompt=[request.prompt], generator=[gen], **kwargs).images[0]
        return [Generation(image=image, seconds=time.perf_counter() - t0)]


def capabilities(spec: ModelSpec) -> dict[str, bool | None]:
    """What the model can do, known without loading weights: {"edit": ..., "think": False, "refine": False}.

    `edit` is None when it cannot be told yet (a hub id that is not in the local cache).
    """
    if spec.name in PRESETS and spec.name != "diffusers":
        return {**DiffusersGenerator.declared(), "edit": spec.name in EDIT_PRESETS}
    return {**DiffusersGenerator.declared(), "edit": _folder_takes_image(spec.path)}


def _folder_takes_image(source: str | None) -> bool | None:
    """Read model_index.json (a folder or the local HF cache) and inspect the named pipeline class."""
    import json

    if not source:
        return None
    index = os.path.join(source, "model_index.json")
    if not os.path.isfile(index):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "model_index.json")
        except Exception:  # noqa: BLE001 - not a valid repo id: unknown until loading says more
            return None
        if not isinstance(cached, str):
            return None
        index = cached
    try:
        with open(index, encoding="utf-8") as f:
            class_name = json.load(f).get("_class_name")
        import diffusers

        return takes_image(getattr(diffusers, class_name))
    except (OSError, ValueError, AttributeError, TypeError, ImportError, RuntimeError):
        return None


def build(spec: ModelSpec) -> DiffusersGenerator:
    """sd35m, tiny-sd3 and tiny-sd3-edit presets, or `diffusers:<hub id or local folder>`."""
    from evalkit.options import parse_options

    parse_options(DiffusersOptions, spec.options, owner=spec.name)
    if spec.options.get("think"):
        from evalkit.errors import EvalkitError

        model = spec.name if spec.name != "diffusers" else f"diffusers:{spec.path}"
        raise EvalkitError(THINK_ERROR.format(model=model))
    from diffusers import DiffusionPipeline

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):  # the CLI shows its own progress
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    from evalkit.devices import resolve_device

    device = resolve_device(spec.device)
    dtype = _dtype(spec.dtype, device)
    options = dict(spec.options)
    batch_size = int(options.pop("batch_size", 4))
    lora = options.get("lora")  # a LoRA folder saved by the GRPO trainer (or any diffusers LoRA)
    settings = {**PRESETS.get(spec.name, {}), **options}
    edit_pipe = None
    if spec.name in ("tiny-sd3", "tiny-sd3-edit"):
        from evalkit.testing.sd3 import default_folder, tiny_sd3_pipeline

        pipe = tiny_sd3_pipeline(torch_dtype=dtype)
        source = str(default_folder())
        if spec.name == "tiny-sd3-edit":
            from diffusers import StableDiffusion3Img2ImgPipeline

            edit_pipe = StableDiffusion3Img2ImgPipeline.from_pipe(pipe)  # same components, no copy
    else:
        if spec.name == "sd35m":
            from evalkit.checkpoints import resolve

            source = str(resolve("sd35m"))
        elif spec.path:
            source = spec.path
        else:
            from evalkit.errors import EvalkitError

            raise EvalkitError("use --model diffusers:<hub id or local folder>")
        pipe = _load_pipeline(DiffusionPipeline, source, dtype)
        if takes_image(pipe):
            edit_pipe = pipe  # img2img / instruction-edit pipelines edit with their own call
    if lora:
        pipe.load_lora_weights(str(lora))
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if edit_pipe is not None:
        edit_pipe = edit_pipe.to(device)
        edit_pipe.set_progress_bar_config(disable=True)
    return DiffusersGenerator(
        spec.name if spec.name != "diffusers" else f"diffusers:{source}",
        pipe,
        settings,
        source,
        batch_size,
        edit_pipe=edit_pipe,
        user_keys=frozenset(options),
    )


def _load_pipeline(cls, source: str, dtype):
    """Load from a folder or the local HF cache; never download implicitly."""
    from evalkit.errors import MissingWeightsError

    local_only = not os.path.isdir(source)
    try:
        return cls.from_pretrained(source, torch_dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as e:
        raise MissingWeightsError(
            f"could not load diffusers pipeline '{source}' ({str(e).splitlines()[0][:160]}); "
            f"download it first: huggingface-cli download {source} --local-dir <folder>"
        ) from None

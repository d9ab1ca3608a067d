"""Any diffusers text-to-image pipeline as a Generator: SD3.5-Medium, tiny-sd3, or a hub id / local folder.

Each image gets its own torch.Generator seeded with its per-sample seed, so a batch gives the same images
as one-at-a-time generation and results do not depend on batch size or sharding.
"""

from __future__ import annotations

import os
import time
from typing import Any

from evalkit.generators.base import Generation, GenerationRequest, ModelSpec

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
PIPELINE_KEYS = {
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "max_sequence_length",
    "true_cfg_scale",
}


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def _dtype(name: str | None, device: str):
    import torch

    if name is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    except KeyError:
        from evalkit.errors import EvalkitError

        raise EvalkitError(f"unknown dtype '{name}' (use bf16, fp16 or fp32)") from None


class DiffusersGenerator:
    def __init__(self, name: str, pipe, settings: dict[str, Any], source: str, batch_size: int = 4):
        self.name = name
        self.pipe = pipe
        self.settings = settings
        self.source = source
        self.batch_size = batch_size

    def config(self) -> dict[str, Any]:
        return {
            "adapter": "diffusers",
            "model": self.name,
            "source": self.source,
            "pipeline": type(self.pipe).__name__,
            "dtype": str(self.pipe.dtype),
            **self.settings,
        }

    def _call_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.settings.items() if k in PIPELINE_KEYS}
        kwargs.update({k: v for k, v in request.options.items() if k in PIPELINE_KEYS})
        kwargs["height"] = request.height or self.settings.get("height")
        kwargs["width"] = request.width or self.settings.get("width")
        return {k: v for k, v in kwargs.items() if v is not None}

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Requests with equal settings are batched; each keeps its own seeded torch.Generator."""
        import torch

        out: list[Generation] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            kwargs = self._call_kwargs(chunk[0])
            if any(self._call_kwargs(r) != kwargs for r in chunk):
                out.extend(g for r in chunk for g in self.generate_one(r))
                continue
            gens = [torch.Generator(device="cpu").manual_seed(r.seed) for r in chunk]
            t0 = time.perf_counter()
            images = self.pipe(prompt=[r.prompt for r in chunk], generator=gens, **kwargs).images
            per = (time.perf_counter() - t0) / len(chunk)
            out.extend(Generation(image=im, seconds=per) for im in images)
        return out

    def generate_one(self, request: GenerationRequest) -> list[Generation]:
        import torch

        t0 = time.perf_counter()
        gen = torch.Generator(device="cpu").manual_seed(request.seed)
        image = self.pipe(prompt=[request.prompt], generator=[gen], **self._call_kwargs(request)).images[0]
        return [Generation(image=image, seconds=time.perf_counter() - t0)]


def build(spec: ModelSpec) -> DiffusersGenerator:
    """sd35m and tiny-sd3 presets, or `diffusers:<hub id or local folder>`."""
    from diffusers import DiffusionPipeline

    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):  # the CLI shows its own progress
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    device = spec.device or default_device()
    dtype = _dtype(spec.dtype, device)
    options = dict(spec.options)
    batch_size = int(options.pop("batch_size", 4))
    settings = {**PRESETS.get(spec.name, {}), **options}
    if spec.name == "tiny-sd3":
        from evalkit.generators.tiny_sd3 import default_folder, tiny_sd3_pipeline

        pipe = tiny_sd3_pipeline(torch_dtype=dtype)
        source = str(default_folder())
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
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return DiffusersGenerator(
        spec.name if spec.name != "diffusers" else f"diffusers:{source}", pipe, settings, source, batch_size
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

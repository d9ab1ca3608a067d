"""Generator adapters `bagel` and `alphagrpo` (BAGEL + merged LoRA, variants rt2i | srr).

Both run on evalkit's own BAGEL runtime (`evalkit.bagel`). Requests are grouped by their effective
settings, size and edit/no-edit, and each group is generated in batches; batching does not change the
images (see tests/bagel/test_bagel_model.py). A request's settings are a preset (its `preset` option; else,
for a benchmark that sends `generation_presets["bagel"]`, `t2i` or `edit` with the benchmark's settings on
top; else the model's default: `t2i`, `edit` for input images, `rt2i` for AlphaGRPO-RT2I), overridden by
`--option` values, overridden by the request's explicit setting options.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from PIL import Image

from evalkit.errors import EvalkitError, MissingWeightsError
from evalkit.generators.base import Generation, GenerationRequest, Generator, ModelSpec, SelfCheck
from evalkit.options import option, require_at_least_one

log = logging.getLogger(__name__)

_COMMON = dict(num_timesteps=50, timestep_shift=3.0, cfg_text_scale=4.0, cfg_renorm_min=0.0)
# Official model presets (BAGEL inference notebook; AlphaGRPO eval scripts). The settings of a benchmark's
# official eval script are that benchmark's `generation_presets` (evalkit/benchmarks/<name>/benchmark.py).
PRESETS: dict[str, dict[str, Any]] = {
    "t2i": {**_COMMON, "cfg_img_scale": 1.0, "cfg_interval": (0.4, 1.0), "cfg_renorm_type": "global"},
    "edit": {**_COMMON, "cfg_img_scale": 2.0, "cfg_interval": (0.0, 1.0), "cfg_renorm_type": "text_channel"},
    # AlphaGRPO reasoning T2I: think (sampled, T = 0.3) then draw with the T2I preset
    "rt2i": {
        **_COMMON,
        "cfg_img_scale": 1.0,
        "cfg_interval": (0.4, 1.0),
        "cfg_renorm_type": "global",
        "think": True,
        "think_do_sample": True,
        "think_temperature": 0.3,
        "max_think_tokens": 1000,
    },
    # AlphaGRPO inference-time SRR (eval/gen/gen_images_mp_reflect.py): reflect, then edit one round
    "srr": {
        **_COMMON,
        "cfg_img_scale": 2.0,
        "cfg_interval": (0.4, 1.0),
        "cfg_renorm_type": "text_channel",
        "think": True,
        "think_do_sample": True,
        "think_temperature": 0.3,
        "max_think_tokens": 1000,
    },
}
SETTING_KEYS = frozenset(
    {
        "num_timesteps",
        "timestep_shift",
        "cfg_text_scale",
        "cfg_img_scale",
        "cfg_interval",
        "cfg_renorm_type",
        "cfg_renorm_min",
        "think",
        "max_think_tokens",
        "think_do_sample",
        "think_temperature",
    }
)
MODEL_OPTION_KEYS = frozenset(
    {"variant", "lora", "base", "batch_size", "resolution", "preset", "vit_min_size"}
)


@dataclass
class BagelOptions:
    """`--option` keys of `bagel` and `alphagrpo` (None: the preset's value; presets in PRESETS)."""

    variant: Literal["rt2i", "srr"] | None = option(None, "alphagrpo only: rt2i (default) or srr adapter")
    lora: str | None = option(None, "alphagrpo: the PEFT adapter folder (default checkpoints/alphagrpo-*)")
    base: str | None = option(None, "the BAGEL checkpoint folder (default checkpoints/bagel)")
    preset: str | None = option(None, "t2i, edit, rt2i or srr (default: the benchmark's, else t2i)")
    resolution: int | None = option(None, "largest image side in pixels (default: the model's, 1024)")
    batch_size: int | None = option(None, "images per call (default 4; does not change images)")
    vit_min_size: int | None = option(None, "ViT short-edge minimum (alphagrpo: 378, bagel: 224)")
    num_timesteps: int | None = option(None, "flow-matching steps (50)")
    timestep_shift: float | None = option(None, "timestep shift (3.0)")
    cfg_text_scale: float | None = option(None, "text CFG scale (4.0)")
    cfg_img_scale: float | None = option(None, "image CFG scale (t2i 1.0, edit 2.0)")
    cfg_interval: tuple | None = option(None, "CFG active interval [start, end] (t2i [0.4, 1.0])")
    cfg_renorm_type: str | None = option(None, "global or text_channel")
    cfg_renorm_min: float | None = option(None, "CFG renormalisation minimum (0.0)")
    think: bool | None = option(None, "write a plan before drawing (rt2i, srr: true)")
    max_think_tokens: int | None = option(None, "think budget in tokens (1000)")
    think_do_sample: bool | None = option(None, "sample the think text (rt2i: true)")
    think_temperature: float | None = option(None, "think sampling temperature (rt2i: 0.3)")

    def __post_init__(self) -> None:
        require_at_least_one(self, ("resolution", "batch_size", "num_timesteps", "max_think_tokens"))


# AlphaGRPO's eval scripts build the ViT transform with a 378-px short-edge minimum (BAGEL: 224).
ALPHAGRPO_VIT_MIN_SIZE = 378

# AlphaGRPO's reflection prompt as its SRR eval script writes it (eval/gen/gen_images_mp_reflect.py, with a
# space before the newline; the training constant in alpha_grpo/constants.py has none).
REFLECTION_PROMPT = (
    "The user requires to generate image of `{}`. You tried to generate an image based on the user's "
    "request, but you failed to create the correct image. \nReflect on what went wrong and write down the "
    "editing instruction that will help you do better and refine the image to meet user's request based "
    "on your own reflection."
)


def _coerce(value: Any) -> Any:
    """CLI `--option k=v` values arrive as strings; parse numbers, booleans and lists."""
    if isinstance(value, str):
        value = yaml.safe_load(value)
    return tuple(value) if isinstance(value, list) else value


class BagelGenerator(Generator):
    """A BAGEL pipeline: draws, edits, thinks and refines its own images (SRR)."""

    supports_edit = True
    supports_think = True
    can_refine = True
    can_self_check = True  # its own reflection decides whether to redraw (SRR's self gate)
    family = "bagel"  # the key of this model's entry in a benchmark's generation_presets

    def __init__(
        self,
        pipe,
        *,
        name: str = "bagel",
        variant: str | None = None,
        preset: str = "t2i",
        overrides: dict[str, Any] | None = None,
        resolution: int = 1024,
        batch_size: int = 4,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        if preset not in PRESETS:
            raise EvalkitError(f"unknown BAGEL preset '{preset}' (known: {', '.join(PRESETS)})")
        self.pipe, self.name, self.variant = pipe, name, variant
        self.preset, self.overrides = preset, dict(overrides or {})
        self.resolution, self.batch_size = resolution, batch_size
        self.provenance = dict(provenance or {})

    def config(self) -> dict[str, Any]:
        """What changes the images (batch size and device do not)."""
        return {
            "model": self.name,
            "variant": self.variant,
            "runtime": "evalkit.bagel",
            "preset": self.preset,
            "settings": self.settings({}),
            "resolution": self.resolution,
            "dtype": str(self.pipe.model.dtype).removeprefix("torch."),
            "vae_transform": list(self.pipe.config.vae_transform),
            "vit_transform": list(self.pipe.config.vit_transform),
            **self.provenance,
        }

    def settings(self, options: dict[str, Any], *, edit: bool = False) -> dict[str, Any]:
        """Effective sampler settings for one request."""
        preset = options.get("preset")  # named explicitly: the benchmark's settings do not apply
        from_benchmark = None if preset else (options.get("generation_presets") or {}).get(self.family)
        if preset is None:
            if from_benchmark is not None:  # the benchmark's settings over the plain t2i / edit ones
                preset = "edit" if edit else "t2i"
            else:
                preset = "edit" if edit and self.preset in ("t2i", "rt2i") else self.preset
        if preset not in PRESETS:
            raise EvalkitError(f"unknown BAGEL preset '{preset}' (known: {', '.join(PRESETS)})")
        out = {**PRESETS[preset], **(from_benchmark or {}), **self.overrides}
        for key, value in options.items():
            if key in SETTING_KEYS:
                out[key] = _coerce(value)
            elif key not in ("preset", "benchmark", "generation_presets"):
                log.debug("bagel: ignoring request option %r", key)
        out["cfg_interval"] = tuple(out["cfg_interval"])
        return out

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            settings = self.settings(req.options, edit=req.input_image is not None)
            size = (req.height or self.resolution, req.width or self.resolution)
            key = json.dumps([settings, size, req.input_image is not None], sort_keys=True)
            groups.setdefault(key, []).append(i)
        results: list[Generation | None] = [None] * len(requests)
        for key, indexes in groups.items():
            settings, (height, width), _ = json.loads(key)
            settings["cfg_interval"] = tuple(settings["cfg_interval"])
            for start in range(0, len(indexes), self.batch_size):
                chunk = indexes[start : start + self.batch_size]
                for i, gen in zip(
                    chunk, self._run([requests[i] for i in chunk], settings, height, width), strict=True
                ):
                    results[i] = gen
        return results  # type: ignore[return-value]

    def _run(
        self, requests: list[GenerationRequest], settings: dict, height: int, width: int
    ) -> list[Generation]:
        edit = requests[0].input_image is not None
        started = time.perf_counter()
        outputs = self.pipe.generate_images(
            [r.prompt for r in requests],
            height=height,
            width=width,
            input_images=[r.input_image for r in requests] if edit else None,
            seeds=[r.seed for r in requests],
            **settings,
        )
        seconds = (time.perf_counter() - started) / len(requests)
        return [
            Generation(
                image=o.image,
                think=o.think,
                seconds=seconds,
                extra={"settings": settings, "batch": len(requests)},
            )
            for o in outputs
        ]

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation:
        """One round of self-reflective refinement: reflect on the image (think), then edit it."""
        settings = self.settings({"preset": "srr", **options})
        instruction = REFLECTION_PROMPT.format(prompt)
        started = time.perf_counter()
        out = self.pipe.generate_image(instruction, input_image=image, seed=seed, **settings)
        return Generation(
            image=out.image,
            think=out.think,
            seconds=time.perf_counter() - started,
            extra={"settings": settings, "reflection_prompt": instruction},
        )

    def self_check(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> SelfCheck:
        """Reflect on the image as `refine` would (same prompt, settings and seed, so the same think text),
        then answer evalkit's yes/no question in the same context; greedy, at most 16 answer tokens."""
        from evalkit.srr import SELF_CHECK_QUESTION, parse_self_verdict

        settings = self.settings({"preset": "srr", **options})
        instruction = REFLECTION_PROMPT.format(prompt)
        question = SELF_CHECK_QUESTION.format(prompt)
        started = time.perf_counter()
        reflection, answer = self.pipe.reflect_and_answer(
            instruction, image, question, seed=seed, max_answer_tokens=16, **settings
        )
        verdict = parse_self_verdict(answer)
        return SelfCheck(
            score=None if verdict is None else float(verdict),
            reflection=reflection,
            answer=answer,
            extra={"question": question, "seconds": round(time.perf_counter() - started, 4)},
        )


def _is_adapter(path: str | Path) -> bool:
    return (Path(path).expanduser() / "adapter_config.json").exists()


def _base_folder(spec: ModelSpec, options: dict[str, Any]) -> Path:
    """--option base=, else a --model path that is not an adapter, else checkpoints/bagel or the HF cache."""
    if options.get("base"):
        return Path(str(options["base"])).expanduser()
    if spec.path and not _is_adapter(spec.path):
        return Path(spec.path).expanduser()
    from evalkit.checkpoints import resolve

    return resolve("bagel")


def _adapter_folder(spec: ModelSpec, options: dict[str, Any], variant: str) -> Path:
    """--option lora=, else a --model path holding an adapter, else checkpoints/alphagrpo-<variant>."""
    if options.get("lora"):
        folder = Path(str(options["lora"])).expanduser()
    elif spec.path and _is_adapter(spec.path):
        folder = Path(spec.path).expanduser()
    else:
        from evalkit.checkpoints import resolve

        folder = resolve(f"alphagrpo-{variant}")
    if not _is_adapter(folder):
        raise MissingWeightsError(
            f"no PEFT adapter (adapter_config.json) in {folder}; see checkpoints/alphagrpo-{variant}.yaml: "
            f"download it from huggingface.co/collections/huangrh9/alphagrpo or pass --option lora=PATH"
        )
    return folder


def build(spec: ModelSpec) -> BagelGenerator:
    """Registry factory for `bagel` and `alphagrpo` (`--option variant=rt2i|srr`)."""
    from evalkit import bagel
    from evalkit.bagel.lora import merge_lora

    if spec.name not in ("bagel", "alphagrpo"):
        raise EvalkitError(f"bagel adapter cannot build model '{spec.name}'")
    options = {k: _coerce(v) for k, v in spec.options.items()}
    variant = options.get("variant")
    if spec.name == "alphagrpo":
        variant = variant or "rt2i"
        if variant not in ("rt2i", "srr"):
            raise EvalkitError(f"alphagrpo variant must be rt2i or srr, got '{variant}'")
    elif variant is not None:
        raise EvalkitError("the bagel model has no variants; use --model alphagrpo --option variant=rt2i|srr")
    unknown = set(options) - SETTING_KEYS - MODEL_OPTION_KEYS
    if unknown:
        raise EvalkitError(f"unknown option(s) for {spec.name}: {', '.join(sorted(unknown))}")
    base = _base_folder(spec, options)
    adapter = _adapter_folder(spec, options, variant) if spec.name == "alphagrpo" else None
    vit_min = options.get("vit_min_size", ALPHAGRPO_VIT_MIN_SIZE if spec.name == "alphagrpo" else None)
    from evalkit.devices import resolve_device

    device = resolve_device(spec.device)
    pipe = bagel.load(base, dtype=spec.dtype, device=device, vit_min_size=vit_min)
    provenance: dict[str, Any] = {"base": str(base)}
    if adapter is not None:
        merge_lora(pipe, adapter)
        provenance["lora"] = str(adapter)
    default_preset = "rt2i" if variant == "rt2i" else "t2i"
    overrides = {k: v for k, v in options.items() if k in SETTING_KEYS}
    return BagelGenerator(
        pipe,
        name=spec.name,
        variant=variant,
        preset=str(options.get("preset", default_preset)),
        overrides=overrides,
        # default: the model's largest side (1024 px for the release, as in the official presets)
        resolution=int(options.get("resolution", pipe.config.max_latent_size * pipe.config.pixels_per_token)),
        batch_size=int(options.get("batch_size", 4)),
        provenance=provenance,
    )


def capabilities(spec: ModelSpec) -> dict[str, bool | None]:
    """What BAGEL and AlphaGRPO can do, known without loading weights (the class declares it)."""
    return BagelGenerator.declared()

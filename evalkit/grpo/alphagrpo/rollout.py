"""AlphaGRPO rollouts on a trainable BAGEL: RT2I (think, then draw) and SRR (reflect on an image, redraw).

A rollout batch is this rank's B samples of one loader batch. It records what the update replays: the KV
contexts, the sampled think texts and their log-probs (re-tokenised from the decoded text, temperature 1),
the SDE window, every latent of the image path and the per-step log-probs of the window's SDE steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from evalkit.bagel.train import CFGSettings, Contexts, TrainableBagel
from evalkit.grpo.alphagrpo.sampling import draw_noise, get_timesteps, sample_sde_window, sde_rollout

#: alpha_grpo/constants.py (training copy; the evaluation scripts' copy has an extra space, see self_check)
REFLECTION_PROMPT = (
    "The user requires to generate image of `{}`. You tried to generate an image based on the user's request, "
    "but you failed to create the correct image.\nReflect on what went wrong and write down the editing "
    "instruction that will help you do better and refine the image to meet user's request based on your own "
    "reflection."
)


@dataclass
class RolloutBatch:
    """One rollout batch of this rank, everything the update needs to replay it."""

    task: str  # "t2i" | "edit"
    prompts: list[str]
    metadata: list[dict[str, Any]]
    contexts: Contexts  # before the think text
    image_contexts: Contexts  # with the think text (what the image steps attend to)
    grid: list[tuple[int, int]]
    cfg: CFGSettings
    num_steps: int
    window: tuple[int, int]
    latents: list[torch.Tensor]
    sde_steps: list[int]
    old_image_log_probs: torch.Tensor  # [B, K]
    images: list[Image.Image]
    think_texts: list[str] | None = None
    old_think_log_probs: torch.Tensor | None = None
    think_lens: list[int] | None = None
    init_rewards: list[float] | None = None  # SRR: reward of the image each sample refines
    init_images: list[Image.Image] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_sample(self) -> list[int]:
        return [r * c for r, c in self.grid]


def t2i_cfg(sample: Mapping[str, Any]) -> CFGSettings:
    """T2I guidance: text CFG only (no input image, so image scale 1, as the official T2I calls)."""
    return CFGSettings(
        sample["cfg_text_scale"],
        1.0,
        tuple(sample["cfg_interval"]),
        sample["cfg_renorm_type"],
        sample["cfg_renorm_min"],
    )


def edit_cfg(sample: Mapping[str, Any]) -> CFGSettings:
    return CFGSettings(
        sample["cfg_text_scale"],
        sample["cfg_image_scale"],
        tuple(sample["cfg_interval_edit"]),
        sample["cfg_renorm_type_edit"],
        sample["cfg_renorm_min"],
    )


def draw_window(config: Mapping[str, Any], rng: random.Random) -> tuple[int, int]:
    sample, train = config["sample"], config["train"]
    return sample_sde_window(
        sample["num_steps"],
        train["timestep_fraction"],
        sample["sde_window_range"],
        sample["random_sde_window"] and sample["enable_sde_window"],
        train["disable_image_grpo"],
        rng=rng,
    )


@dataclass
class SampleSeeds:
    """Per-sample generators (think text, image noise, SRR input-image VAE posterior); None fields use the
    global RNG (official)."""

    think: list[torch.Generator] | None = None
    image: list[torch.Generator] | None = None
    posterior: list[torch.Generator] | None = None


def _noise(model: TrainableBagel, grid: Sequence[tuple[int, int]], generators=None) -> torch.Tensor:
    return draw_noise(model.pipe.config.latent_channels, [r * c for r, c in grid], generators)


def _think(model, contexts: Contexts, sample: Mapping[str, Any], max_tokens: int, seeds: SampleSeeds):
    texts = model.sample_think(
        contexts.gen,
        max_tokens=max_tokens,
        temperature=sample["think_text_temperature"],
        top_p=sample["think_text_top_p"] if sample["think_text_top_p"] is not None else 1.0,
        generator=seeds.think,
    )
    with torch.no_grad():
        old_lp, lens, _ = model.think_log_probs(contexts.gen, texts, sample["think_text_temperature"])
    return texts, old_lp.detach(), lens


def _image_path(model, contexts, grid, cfg, num_steps, config, window, deterministic=False, gens=None):
    sample = config["sample"]
    with torch.no_grad():
        return sde_rollout(
            model.velocity_fn(contexts, grid, cfg),
            _noise(model, grid, gens),
            get_timesteps(num_steps, sample["timestep_shift"]),
            tokens_per_sample=[r * c for r, c in grid],
            cfg_interval=cfg.interval,
            cfg_text_scale=cfg.text_scale,
            cfg_img_scale=cfg.img_scale,
            noise_level=sample["noise_level"],
            sde_window=window,
            deterministic=deterministic,
            use_flowcps=sample["use_flowcps"],
            generator=gens,
        )


def rollout_t2i(
    model: TrainableBagel,
    prompts: Sequence[str],
    metadata: Sequence[dict[str, Any]],
    config: Mapping[str, Any],
    window: tuple[int, int],
    max_think_tokens: int,
    seeds: SampleSeeds | None = None,
) -> RolloutBatch:
    """RT2I (`tasks/t2i.py`): [system, prompt] -> sampled think text -> image by SDE with T2I CFG."""
    sample = config["sample"]
    think = bool(sample["think"])
    contexts = model.t2i_contexts(list(prompts), think)
    texts = old_lp = lens = None
    image_contexts = contexts
    if think:
        texts, old_lp, lens = _think(model, contexts, sample, max_think_tokens, seeds or SampleSeeds())
        image_contexts = model.append_think(contexts, texts)
    grid = [model.latent_grid(config["resolution"], config["resolution"])] * len(prompts)
    cfg = t2i_cfg(sample)
    gens = (seeds or SampleSeeds()).image
    path = _image_path(model, image_contexts, grid, cfg, sample["num_steps"], config, window, gens=gens)
    images = model.decode(path.final, grid)
    return RolloutBatch(
        "t2i",
        list(prompts),
        list(metadata),
        contexts,
        image_contexts,
        grid,
        cfg,
        sample["num_steps"],
        window,
        path.latents,
        path.sde_steps,
        path.log_probs.T.contiguous(),
        images,
        texts,
        old_lp,
        lens,
    )


def stage1_images(
    model: TrainableBagel, prompts: Sequence[str], config: Mapping[str, Any], per_prompt: int
) -> dict[str, list[Image.Image]]:
    """SRR stage 1: deterministic ODE T2I images with the eval settings (no think, image scale 1)."""
    sample = config["sample"]
    unique = list(dict.fromkeys(prompts))
    expanded = [p for p in unique for _ in range(per_prompt)]
    contexts = model.t2i_contexts(expanded, think=False)
    grid = [model.latent_grid(config["resolution"], config["resolution"])] * len(expanded)
    cfg = t2i_cfg(sample)
    path = _image_path(model, contexts, grid, cfg, sample["eval_num_steps"], config, None, True)
    images = model.decode(path.final, grid)
    out: dict[str, list[Image.Image]] = {p: [] for p in unique}
    for prompt, image in zip(expanded, images, strict=True):
        out[prompt].append(image)
    return out


def stage1_per_prompt(num_gpus: int, unique_prompts: int) -> int:
    """Initial images per prompt: the prompts are spread over all ranks, one image per rank."""
    return max(1, math.ceil(num_gpus / max(unique_prompts, 1)))


def rollout_reflect(
    model: TrainableBagel,
    prompts: Sequence[str],
    metadata: Sequence[dict[str, Any]],
    init: Mapping[str, tuple[Image.Image, float]],
    config: Mapping[str, Any],
    window: tuple[int, int],
    max_think_tokens: int,
    seeds: SampleSeeds | None = None,
) -> RolloutBatch:
    """SRR stage 2 (`tasks/reflect.py`): [system, init image, reflection prompt] -> think -> refined image.

    `init[prompt]` is the lowest-reward stage-1 image of that prompt and its reward.
    """
    sample = config["sample"]
    images = [init[p][0] for p in prompts]
    reflection = [REFLECTION_PROMPT.format(p) for p in prompts]
    seeds = seeds or SampleSeeds()
    contexts, sizes = model.edit_contexts(images, reflection, think=True, generators=seeds.posterior)
    texts, old_lp, lens = _think(model, contexts, sample, max_think_tokens, seeds)
    image_contexts = model.append_think(contexts, texts)
    grid = [model.latent_grid(h, w) for h, w in sizes]
    cfg = edit_cfg(sample)
    gens = (seeds or SampleSeeds()).image
    path = _image_path(model, image_contexts, grid, cfg, sample["num_steps"], config, window, gens=gens)
    refined = model.decode(path.final, grid)
    return RolloutBatch(
        "edit",
        list(prompts),
        list(metadata),
        contexts,
        image_contexts,
        grid,
        cfg,
        sample["num_steps"],
        window,
        path.latents,
        path.sde_steps,
        path.log_probs.T.contiguous(),
        refined,
        texts,
        old_lp,
        lens,
        init_rewards=[init[p][1] for p in prompts],
        init_images=images,
    )

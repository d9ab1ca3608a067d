"""SD3 rollouts that record what GRPO trains on: the latents before/after each SDE step and its log-prob.

The sampler is written out here (instead of calling the diffusers pipeline) because every step has to go
through `sde_step_with_logprob`, and training must recompute the exact same velocity for a stored step.
`predict_velocity` is therefore shared by rollout and training. Latents stay in float32 between steps so the
stored `next_latents` are bit-identical to what the rollout log-prob was computed on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from evalkit.grpo.sde import sde_step_with_logprob


@dataclass
class PromptEmbeds:
    embeds: torch.Tensor
    pooled: torch.Tensor
    neg_embeds: torch.Tensor | None = None
    neg_pooled: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> PromptEmbeds:
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return PromptEmbeds(
            pick(self.embeds), pick(self.pooled), pick(self.neg_embeds), pick(self.neg_pooled)
        )


@dataclass
class Rollout:
    """One batch of trajectories; S = number of stored (trainable) SDE steps."""

    latents: torch.Tensor  # [B, S, C, h, w] x before each stored step
    next_latents: torch.Tensor  # [B, S, C, h, w] x after it
    log_probs: torch.Tensor  # [B, S]
    timesteps: torch.Tensor  # [B, S]
    images: torch.Tensor  # [B, 3, H, W] in [0, 1]
    step_indices: list[int]  # which denoising steps were stored


@torch.no_grad()
def encode_prompts(
    pipeline,
    prompts: Sequence[str],
    negative_prompt: str,
    max_sequence_length: int,
    cfg: bool,
    negative: PromptEmbeds | None = None,
) -> PromptEmbeds:
    """Text embeddings for the prompts (and the negative prompt when CFG is used); encoders are frozen.

    `negative` (from `encode_negative`) is the negative prompt encoded once per run: re-encoding the
    same text for every batch is what made an epoch slower than the official trainer."""
    embeds, pooled = _encode(pipeline, list(prompts), max_sequence_length)
    if not cfg:
        return PromptEmbeds(embeds, pooled)
    negative = negative or encode_negative(pipeline, negative_prompt, max_sequence_length)
    n = len(prompts)
    return PromptEmbeds(embeds, pooled, negative.embeds.repeat(n, 1, 1), negative.pooled.repeat(n, 1))


@torch.no_grad()
def encode_negative(pipeline, negative_prompt: str, max_sequence_length: int) -> PromptEmbeds:
    """The negative prompt's embeddings for one image; `encode_prompts` repeats them per batch."""
    embeds, pooled = _encode(pipeline, [negative_prompt], max_sequence_length)
    return PromptEmbeds(embeds, pooled)


def _encode(pipeline, prompts: list[str], max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    embeds, _, pooled, _ = pipeline.encode_prompt(
        prompt=prompts,
        prompt_2=None,
        prompt_3=None,
        device=pipeline.transformer.device,
        do_classifier_free_guidance=False,
        max_sequence_length=max_sequence_length,
    )
    return embeds, pooled


def predict_velocity(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    prompt: PromptEmbeds,
    guidance_scale: float,
    use_cfg: bool,
) -> torch.Tensor:
    """The (guided) velocity for a batch; CFG runs as one batched forward over [uncond, cond]."""
    dtype = next(p.dtype for n, p in transformer.named_parameters() if "lora_" not in n)  # base weights
    if use_cfg:
        model_in = torch.cat([latents, latents]).to(dtype)
        text = torch.cat([prompt.neg_embeds, prompt.embeds])
        pooled = torch.cat([prompt.neg_pooled, prompt.pooled])
        t = torch.cat([timestep, timestep])
    else:
        model_in, text, pooled, t = latents.to(dtype), prompt.embeds, prompt.pooled, timestep
    out = transformer(
        hidden_states=model_in,
        timestep=t,
        encoder_hidden_states=text,
        pooled_projections=pooled,
        return_dict=False,
    )[0].float()
    if not use_cfg:
        return out
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def make_scheduler(pipeline, num_steps: int, image_seq_len: int):
    """A private copy of the pipeline's scheduler with `num_steps` set (the pipeline's own is left alone)."""
    scheduler = copy.deepcopy(pipeline.scheduler)
    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting", False):
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        c = scheduler.config
        kwargs["mu"] = calculate_shift(
            image_seq_len,
            c.get("base_image_seq_len", 256),
            c.get("max_image_seq_len", 4096),
            c.get("base_shift", 0.5),
            c.get("max_shift", 1.16),
        )
    scheduler.set_timesteps(num_steps, device=pipeline.transformer.device, **kwargs)
    scheduler.set_begin_index(0)
    return scheduler


def latent_shape(pipeline, height: int, width: int) -> tuple[int, int, int]:
    factor = pipeline.vae_scale_factor
    return pipeline.transformer.config.in_channels, height // factor, width // factor


def initial_latents(
    shape: tuple[int, int, int], generators: Sequence[torch.Generator], device
) -> torch.Tensor:
    """One standard-normal latent per generator, so each sample's noise is independent of batching."""
    return torch.cat([torch.randn((1, *shape), generator=g, dtype=torch.float32) for g in generators]).to(
        device
    )


@torch.no_grad()
def decode_latents(pipeline, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images in [0, 1], VAE scaling/shift as in the SD3 pipeline."""
    vae = pipeline.vae
    z = latents / vae.config.scaling_factor + vae.config.shift_factor
    images = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [0, 1] -> PIL, rounding to uint8 as the reward models' inputs are made."""
    arr = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


@torch.no_grad()
def sample_with_logprob(
    pipeline,
    transformer: torch.nn.Module,
    prompt: PromptEmbeds,
    generators: Sequence[torch.Generator],
    *,
    num_steps: int,
    guidance_scale: float,
    noise_level: float,
    height: int,
    width: int,
    sde_type: str = "sde",
    sde_window: tuple[int, int] | None = None,
    num_stored_steps: int | None = None,
    init_generators: Sequence[torch.Generator] | None = None,
) -> Rollout:
    """Sample a batch, SDE inside `sde_window` (all steps if None) and ODE elsewhere.

    Stored steps are the window's steps, or the first `num_stored_steps` steps without a window.
    `generators[i]` draws sample i's SDE noise (and its initial latent unless `init_generators` is given).
    """
    use_cfg = guidance_scale > 1.0 and prompt.neg_embeds is not None
    device = prompt.embeds.device
    shape = latent_shape(pipeline, height, width)
    image_seq_len = (shape[1] // pipeline.transformer.config.patch_size) * (
        shape[2] // pipeline.transformer.config.patch_size
    )
    scheduler = make_scheduler(pipeline, num_steps, image_seq_len)
    latents = initial_latents(shape, init_generators or generators, device)
    window = sde_window or (0, num_steps)
    stored = list(range(*window)) if sde_window else list(range(num_stored_steps or num_steps))
    before, after, log_probs = [], [], []
    for i, t in enumerate(scheduler.timesteps):
        timestep = t.expand(latents.shape[0])
        velocity = predict_velocity(transformer, latents, timestep, prompt, guidance_scale, use_cfg)
        level = noise_level if window[0] <= i < window[1] else 0.0
        out = sde_step_with_logprob(
            scheduler,
            velocity,
            timestep,
            latents,
            noise_level=level,
            generator=list(generators),
            sde_type=sde_type,
        )
        if i in stored:
            before.append(latents)
            after.append(out.prev_sample)
            log_probs.append(out.log_prob)
        latents = out.prev_sample
    images = decode_latents(pipeline, latents)
    batch = latents.shape[0]
    timesteps = scheduler.timesteps[stored].to(device).unsqueeze(0).expand(batch, -1)
    return Rollout(
        latents=torch.stack(before, dim=1),
        next_latents=torch.stack(after, dim=1),
        log_probs=torch.stack(log_probs, dim=1),
        timesteps=timesteps.clone(),
        images=images,
        step_indices=stored,
    )

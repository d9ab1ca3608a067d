"""BAGEL's flow sampler with AlphaGRPO's SDE: schedule, SDE window, one step, and the rollout loop.

The step is the Flow-GRPO flow-SDE (`evalkit.grpo.sde.flow_sde_moments`, shared with the SD3 trainer), but
its log-prob is BAGEL's: only the quadratic term (the official code comments out the normalisation) and
averaged over each sample's packed latent tokens x channels. Latents are packed `[tokens, channels]`,
several samples concatenated along tokens (`tokens_per_sample` splits them).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from evalkit.bagel.flow import cfg_active, shifted_timesteps
from evalkit.grpo.sde import flow_sde_moments

#: velocity(x, step_index, sigma, cfg_text_scale, cfg_img_scale) -> v, packed like x
VelocityFn = Callable[[torch.Tensor, int, torch.Tensor, float, float], torch.Tensor]


def get_timesteps(num_timesteps: int, timestep_shift: float) -> torch.Tensor:
    """`Bagel.get_timesteps`: the shifted grid from 1 to 0, float32 (same as BAGEL generation)."""
    return shifted_timesteps(num_timesteps, timestep_shift)


def num_train_timesteps(num_steps: int, timestep_fraction: float) -> int:
    return max(int(num_steps * timestep_fraction), 1)


def sample_sde_window(
    num_steps: int,
    timestep_fraction: float,
    sde_window_range: Sequence[int] | None,
    random_sde_window: bool = True,
    disable_image_grpo: bool = False,
    rng: random.Random | None = None,
) -> tuple[int, int]:
    """The `[start, end)` step indices trained this round (official `sample_sde_window`).

    `rng` defaults to Python's global `random` so that a seeded run draws the official windows.
    """
    if disable_image_grpo:
        return (0, -1)
    n = num_train_timesteps(num_steps, timestep_fraction)
    if not random_sde_window:
        return (0, n)
    lo, hi = tuple(sde_window_range) if sde_window_range is not None else (0, num_steps)
    latest = hi - n
    start = (rng or random).randint(lo, latest) if latest > lo else lo
    return (start, start + n)


@dataclass
class StepOutput:
    prev_sample: torch.Tensor  # [N, C] float32
    log_prob: torch.Tensor  # [N, C] element-wise (quadratic term only)
    prev_sample_mean: torch.Tensor  # [N, C]
    std_dev_t: torch.Tensor  # 0-d (without the sqrt(-dt) factor for "sde")
    per_sample_log_prob: torch.Tensor  # [B] mean over each sample's tokens and channels


def _f32(value) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32)


def sde_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    sigma,
    sigma_prev,
    sigma_max,
    noise_level: float,
    *,
    tokens_per_sample: Sequence[int],
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    use_flowcps: bool = False,
) -> StepOutput:
    """One SDE step (official `sde_step` / `sde_step_with_flowcps`) plus the per-sample mean log-prob.

    Noise comes from `generator`, else from the global torch RNG (as in the official rollout). With
    `noise_level` 0 the std is 0 and the log-prob is -inf (nan where the difference is exactly 0), as
    in the official code; use `ode_step` for deterministic steps.
    """
    x, v = sample.float(), model_output.float()
    sigma, sigma_prev, sigma_max = _f32(sigma), _f32(sigma_prev), _f32(sigma_max)
    kind = "cps" if use_flowcps else "sde"
    mean, std_dev_t, scale = flow_sde_moments(x, v, sigma, sigma_prev, sigma_max, noise_level, kind)
    if prev_sample is None:
        eps = draw_noise(x.shape[1], tokens_per_sample, generator).to(x.device)
        prev_sample = mean + scale * eps
    prev_sample = prev_sample.float()  # the official step casts everything to float32 first
    diff = prev_sample.detach() - mean
    log_prob = -(diff**2) if use_flowcps else -(diff**2) / (2 * scale**2)
    per_sample = torch.stack([chunk.mean() for chunk in log_prob.split(list(tokens_per_sample))])
    return StepOutput(prev_sample, log_prob, mean, std_dev_t, per_sample)


def draw_noise(
    channels: int,
    tokens_per_sample: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Packed float32 standard normal noise: one draw for the batch, or one per sample with a generator
    list (so that a sample's noise does not depend on which process or batch row it lands in)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(sum(tokens_per_sample), channels, generator=generator, dtype=torch.float32)
    return torch.cat(
        [
            torch.randn(n, channels, generator=g, dtype=torch.float32)
            for n, g in zip(tokens_per_sample, generator, strict=True)
        ]
    )


def ode_step(sample: torch.Tensor, model_output: torch.Tensor, sigma, sigma_prev) -> torch.Tensor:
    """Euler step `x + v * dt`, dt a 0-d float32 tensor as in the official loop.

    Torch keeps a bf16 velocity's product with a 0-d float32 in bf16; only the sum is float32. That is
    the official rounding (checked by the bf16 rollout fixture), so the velocity is not upcast first.
    """
    return sample.float() + model_output * (_f32(sigma_prev) - _f32(sigma))


@dataclass
class Rollout:
    """One image rollout: `latents[0]` is the initial noise, `latents[i+1]` the state after step i."""

    latents: list[torch.Tensor]
    sde_steps: list[int]
    log_probs: torch.Tensor  # [K, B]: one row per SDE step, in order
    prev_sample_means: list[torch.Tensor] = field(default_factory=list)
    std_dev_ts: list[torch.Tensor] = field(default_factory=list)
    per_step: list[dict] = field(default_factory=list)  # sigma, CFG scales and SDE flag of every step

    @property
    def final(self) -> torch.Tensor:
        return self.latents[-1]


def cfg_scales(sigma: torch.Tensor, interval: Sequence[float], text_scale: float, img_scale: float):
    """The scales a step uses: both 1 outside `lo < sigma <= hi`."""
    if cfg_active(sigma, (float(interval[0]), float(interval[1]))):
        return float(text_scale), float(img_scale)
    return 1.0, 1.0


def is_sde_step(i: int, sde_window: Sequence[int] | None, deterministic: bool) -> bool:
    if deterministic:
        return False
    return sde_window is None or sde_window[0] <= i < sde_window[1]


def sde_rollout(
    velocity: VelocityFn,
    init_noise: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    tokens_per_sample: Sequence[int],
    cfg_interval: Sequence[float],
    cfg_text_scale: float,
    cfg_img_scale: float,
    noise_level: float,
    sde_window: Sequence[int] | None,
    deterministic: bool = False,
    use_flowcps: bool = False,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Rollout:
    """`Bagel.generate_image_with_sde`: ODE steps outside the window, SDE steps (with log-probs) inside.

    Each SDE step draws one `randn(N, C)` float32 from `generator` (default: the global RNG).
    """
    timesteps = timesteps.float()
    sigma_max = timesteps[1]
    x = init_noise.float()
    latents, steps, log_probs, means, stds, per_step = [x], [], [], [], [], []
    for i in range(len(timesteps) - 1):
        sigma, sigma_prev = timesteps[i], timesteps[i + 1]
        text_scale, img_scale = cfg_scales(sigma, cfg_interval, cfg_text_scale, cfg_img_scale)
        v = velocity(x, i, sigma, text_scale, img_scale)
        sde = is_sde_step(i, sde_window, deterministic)
        if sde:
            out = sde_step(
                x,
                v,
                sigma,
                sigma_prev,
                sigma_max,
                noise_level,
                tokens_per_sample=tokens_per_sample,
                generator=generator,
                use_flowcps=use_flowcps,
            )
            x = out.prev_sample
            steps.append(i)
            log_probs.append(out.per_sample_log_prob)
            means.append(out.prev_sample_mean)
            stds.append(out.std_dev_t)
        else:
            x = ode_step(x, v, sigma, sigma_prev)
        latents.append(x)
        per_step.append(
            {
                "step": i,
                "sigma": float(sigma),
                "cfg_text_scale": text_scale,
                "cfg_img_scale": img_scale,
                "sde": sde,
            }
        )
    stacked = torch.stack(log_probs) if log_probs else torch.zeros(0, len(tokens_per_sample))
    return Rollout(latents, steps, stacked, means, stds, per_step)


def step_log_prob(
    velocity: VelocityFn,
    latent: torch.Tensor,
    next_latent: torch.Tensor,
    step_index: int,
    timesteps: torch.Tensor,
    *,
    tokens_per_sample: Sequence[int],
    cfg_interval: Sequence[float],
    cfg_text_scale: float,
    cfg_img_scale: float,
    noise_level: float,
    use_flowcps: bool = False,
) -> StepOutput:
    """Recompute one stored transition (official `compute_image_logprob`); gradients flow via `velocity`."""
    timesteps = timesteps.float()
    sigma, sigma_prev = timesteps[step_index], timesteps[step_index + 1]
    text_scale, img_scale = cfg_scales(sigma, cfg_interval, cfg_text_scale, cfg_img_scale)
    v = velocity(latent, step_index, sigma, text_scale, img_scale)
    return sde_step(
        latent,
        v,
        sigma,
        sigma_prev,
        timesteps[1],
        noise_level,
        tokens_per_sample=tokens_per_sample,
        prev_sample=next_latent,
        use_flowcps=use_flowcps,
    )

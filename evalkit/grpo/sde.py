"""One stochastic flow-matching step with its Gaussian log-probability (Flow-GRPO).

The ODE sampler of a rectified-flow model is turned into an SDE with the same marginals, so every denoising
step becomes an isotropic Gaussian policy whose log-density the GRPO loss can differentiate. Two variants:

* ``"sde"`` (Flow-GRPO): ``std_t = a * sqrt(sigma / (1 - sigma))`` and the mean corrected by the score term.
  The log-prob is the exact Gaussian log-density, **averaged** (not summed) over all non-batch elements, so
  the importance ratio is a per-element geometric mean and the PPO clip range is tiny (1e-4).
* ``"cps"`` (Coefficients-Preserving Sampling): ``std = sigma_next * sin(a * pi / 2)``; the mean mixes the
  predicted clean sample and noise so their coefficients keep unit norm. Its "log-prob" drops every constant
  and the variance, i.e. it is ``-mean((x' - mean)^2)`` (what the reference implementation uses).

All arithmetic runs in float32 whatever the model dtype: bf16/fp16 overflow in the mean and lose the
precision the ratio needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

SDEType = Literal["sde", "cps"]


@dataclass
class SDEStepOutput:
    prev_sample: torch.Tensor  # x_{t-1}, always float32 (a given one is upcast, as the reference does)
    log_prob: torch.Tensor  # [B], per-element mean log-density of prev_sample
    prev_sample_mean: torch.Tensor  # mean of the Gaussian (used by the KL term)
    std_dev_t: torch.Tensor  # [B, 1, 1, 1] (for "sde" without the sqrt(-dt) factor)


def step_indices(scheduler, timestep: torch.Tensor) -> list[int]:
    """Index of each batch element's timestep in the scheduler schedule (per element: they may differ)."""
    timestep = timestep.reshape(-1).to(scheduler.timesteps.device)
    return [scheduler.index_for_timestep(t) for t in timestep]


def _broadcast(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.view(-1, *([1] * (ndim - 1)))


def _sigmas(scheduler, timestep: torch.Tensor, ndim: int, device: torch.device):
    idx = step_indices(scheduler, timestep)
    sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)
    sigma = _broadcast(sigmas[idx], ndim)
    sigma_next = _broadcast(sigmas[[i + 1 for i in idx]], ndim)
    sigma_max = sigmas[1]  # stands in for sigma=1 in the sqrt(sigma / (1 - sigma)) denominator
    return sigma, sigma_next, sigma_max


def _draw_noise(shape, generator, device) -> torch.Tensor:
    """Standard normal noise drawn the way diffusers' randn_tensor draws it (CPU generator, fp32)."""
    if isinstance(generator, list):
        return torch.cat([_draw_noise((1, *shape[1:]), g, device) for g in generator])
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
    return noise.to(device)


def flow_sde_moments(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    sigma: torch.Tensor,
    sigma_next: torch.Tensor,
    sigma_max: torch.Tensor,
    noise_level: float,
    sde_type: SDEType = "sde",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std_dev_t, noise scale) of one step's Gaussian; float32 inputs, sigmas broadcastable.

    Shared by the SD3 trainer and the BAGEL one (AlphaGRPO's `sde_step` is the same flow-SDE): the noise
    scale is `std_dev_t * sqrt(-dt)` for "sde" and `std_dev_t` for "cps".
    """
    dt = sigma_next - sigma  # negative
    if sde_type == "sde":
        denom = 1 - torch.where(sigma == 1, sigma_max, sigma)
        std_dev_t = torch.sqrt(sigma / denom) * noise_level
        mean = sample * (1 + std_dev_t**2 / (2 * sigma) * dt)
        mean = mean + model_output * (1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt
        return mean, std_dev_t, std_dev_t * torch.sqrt(-dt)
    if sde_type == "cps":
        std_dev_t = sigma_next * math.sin(noise_level * math.pi / 2)
        x0_hat = sample - sigma * model_output
        x1_hat = sample + (1 - sigma) * model_output
        mean = x0_hat * (1 - sigma_next) + x1_hat * torch.sqrt(sigma_next**2 - std_dev_t**2)
        return mean, std_dev_t, std_dev_t
    raise ValueError(f"unknown sde_type {sde_type!r} (expected 'sde' or 'cps')")


def sde_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: torch.Tensor,
    sample: torch.Tensor,
    noise_level: float = 0.7,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
    sde_type: SDEType = "sde",
) -> SDEStepOutput:
    """Take one step from `sample` at `timestep` with velocity `model_output`.

    With `prev_sample` given (training), no noise is drawn and the log-prob of that transition is returned.
    With `noise_level=0` the step is the deterministic Euler ODE step; its log-prob is undefined and is
    returned as zeros.
    """
    model_output = model_output.float()
    sample = sample.float()
    if prev_sample is not None:
        prev_sample = prev_sample.float()  # the reference upcasts it too, so a bf16 one comes back as fp32
    sigma, sigma_next, sigma_max = _sigmas(scheduler, timestep, sample.ndim, sample.device)
    mean, std_dev_t, scale = flow_sde_moments(
        sample, model_output, sigma, sigma_next, sigma_max, noise_level, sde_type
    )

    if prev_sample is None:
        noise = _draw_noise(model_output.shape, generator, sample.device)
        prev_sample = mean + scale * noise
    target = prev_sample.detach()

    reduce_dims = tuple(range(1, sample.ndim))
    if noise_level == 0:
        log_prob = torch.zeros(sample.shape[0], device=sample.device)
    elif sde_type == "sde":
        log_prob = (
            -((target - mean) ** 2) / (2 * scale**2) - torch.log(scale) - 0.5 * math.log(2 * math.pi)
        ).mean(dim=reduce_dims)
    else:
        log_prob = (-((target - mean) ** 2)).mean(dim=reduce_dims)
    return SDEStepOutput(prev_sample, log_prob, mean, std_dev_t)


def ode_step(scheduler, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor):
    """The plain Euler step of the flow ODE (what diffusers' FlowMatchEulerDiscreteScheduler.step does)."""
    sigma, sigma_next, _ = _sigmas(scheduler, timestep, sample.ndim, sample.device)
    return sample.float() + (sigma_next - sigma) * model_output.float()

"""AlphaGRPO's two policy losses: Flow-GRPO on each trained image step, GSPO-style on the think text.

Official quirk (a bug): the text loss multiplies a length-B ratio vector by a [B, 1] advantage column, so
the loss is the mean of a B x B matrix ``M[i, j] = -min(rho_j A_i, clip(rho_j) A_i)`` that mixes samples.
`compat="official"` reproduces it; the default `"intended"` pairs each ratio with its own advantage.
With B = 1 (or symmetric inputs) the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evalkit.grpo.loss import clipped_policy_terms

Compat = Literal["intended", "official"]
COMPAT_CHOICES = ("intended", "official")


@dataclass(frozen=True)
class ImageLossConfig:
    """`train.*` values of the presets (config/bagel.py)."""

    image_clip_range: float = 1e-5
    adv_clip_max: float = 5.0
    true_ratio: bool = True
    rollout_correction: bool = False
    correction_truncated_threshold: float = 2.0
    image_beta: float = 0.0


@dataclass(frozen=True)
class TextLossConfig:
    text_clip_range: float = 0.20
    text_clip_range_high: float = 0.28
    text_importance_sampling_level: str = "sequence"  # GSPO
    text_loss_level: str = "token"
    true_ratio: bool = True
    rollout_correction: bool = False
    correction_truncated_threshold: float = 2.0
    text_beta: float = 0.0
    top_entropy_quantile: float = 1.0


def image_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    config: ImageLossConfig,
    *,
    prev_mean: torch.Tensor | None = None,
    ref_prev_mean: torch.Tensor | None = None,
    std_dev_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one trained step j for a per-GPU batch: `log_probs` [B] new, old and advantages [B] (column j).

    The KL term (``image_beta > 0``) is the mean over all packed elements of the squared difference of the
    SDE means divided by ``2 std_dev_t^2`` (the step's std without sqrt(-dt)), as in the official code.
    """
    adv = torch.clamp(advantages, -config.adv_clip_max, config.adv_clip_max)
    old = old_log_probs.detach() if config.true_ratio else log_probs.detach()
    ratio = torch.exp(log_probs - old)
    terms = clipped_policy_terms(ratio, adv, config.image_clip_range, config.image_clip_range)
    if config.rollout_correction:
        weight = torch.exp(log_probs.detach() - old_log_probs.detach())
        terms = weight.clamp(max=config.correction_truncated_threshold) * terms
    policy = terms.mean()
    info = {
        "image_approx_kl": 0.5 * torch.mean((log_probs.detach() - old_log_probs.detach()) ** 2),
        "image_clipfrac": torch.mean((torch.abs(ratio - 1.0) > config.image_clip_range).float()),
        "image_policy_loss": policy.detach(),
        "image_ratio": ratio.mean().detach(),
    }
    if config.image_beta > 0:
        if prev_mean is None or ref_prev_mean is None or std_dev_t is None:
            raise ValueError("image_beta > 0 needs prev_mean, ref_prev_mean and std_dev_t")
        kl = ((prev_mean - ref_prev_mean) ** 2).mean() / (2 * std_dev_t**2)
        info["image_kl_loss"] = kl.detach()
        return policy + config.image_beta * kl, info
    return policy, info


def _split_means(values: torch.Tensor, lens: list[int]) -> torch.Tensor:
    return torch.stack([chunk.mean() for chunk in values.split(lens)])


def text_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    token_lens: list[int],
    advantages: torch.Tensor,
    config: TextLossConfig,
    *,
    entropies: torch.Tensor | None = None,
    ref_log_probs: torch.Tensor | None = None,
    compat: Compat = "intended",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Think-text loss for a per-GPU batch: packed per-token log-probs [sum(token_lens)], advantages [B].

    Advantages are not clipped here (only the image side clips them), as in the official code.
    """
    if compat not in COMPAT_CHOICES:
        raise ValueError(f"compat must be one of {COMPAT_CHOICES}, got {compat!r}")
    if config.top_entropy_quantile < 1.0:
        raise NotImplementedError("top_entropy_quantile < 1 (high-entropy token mask) is not implemented")
    lens = [int(n) for n in token_lens][: advantages.shape[0]]
    old = old_log_probs.detach() if config.true_ratio else log_probs.detach()
    log_ratio = log_probs - old
    level = config.text_importance_sampling_level
    if level == "token":
        adv = torch.repeat_interleave(advantages, torch.tensor(lens, device=advantages.device))
        log_ratio_used = log_ratio
    elif level == "sequence":
        adv = advantages
        log_ratio_used = _split_means(log_ratio, lens)
    else:
        raise ValueError(f"text_importance_sampling_level must be 'token' or 'sequence', got {level!r}")
    ratio = torch.exp(log_ratio_used)
    lo, hi = config.text_clip_range, config.text_clip_range_high
    if compat == "official":
        terms = clipped_policy_terms(ratio, adv.unsqueeze(1), lo, hi)  # [n, n]: the outer product
    else:
        terms = clipped_policy_terms(ratio, adv, lo, hi)
    if config.rollout_correction:
        weight = torch.exp(log_probs.detach() - old_log_probs.detach())
        weight = weight.clamp(max=config.correction_truncated_threshold)
        if compat == "intended" and level == "sequence":
            weight = _split_means(weight, lens)
        terms = weight * terms  # official + sequence level: shapes do not broadcast (RuntimeError)
    if config.text_loss_level == "sequence" and level == "token":
        policy = _split_means(terms, lens).mean()
    else:
        policy = terms.mean()
    info = {
        "text_policy_loss": policy.detach(),
        "text_clipfrac": torch.mean(((1.0 - ratio) > lo).float()),
        "text_clipfrac_high": torch.mean(((ratio - 1.0) > hi).float()),
        "text_ratio": ratio.mean().detach(),
    }
    if entropies is not None:
        info["text_entropies"] = entropies.mean()
    if config.text_beta > 0:
        if ref_log_probs is None:
            raise ValueError("text_beta > 0 needs ref_log_probs")
        delta = ref_log_probs - log_probs
        k3 = torch.exp(delta) - delta - 1
        if level == "sequence":
            k3 = _split_means(k3, lens)
        kl = torch.mean(ratio.detach() * k3)
        info["text_kl_loss"] = kl.detach()
        return policy + config.text_beta * kl, info
    return policy, info


def text_backward_scale(num_train_timesteps: int, text_loss_weight: float) -> float:
    """train.py back-propagates the text loss times `max(1, image train steps) * text_loss_weight`."""
    return max(1, num_train_timesteps) * text_loss_weight

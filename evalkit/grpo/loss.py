"""The clipped GRPO policy loss and the KL penalty to the reference policy."""

from __future__ import annotations

import torch


def clipped_policy_terms(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_low: float, clip_high: float
) -> torch.Tensor:
    """Per-element pessimistic PPO loss ``max(-A r, -A clip(r, 1 - lo, 1 + hi))`` (before any mean)."""
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped)


def clipped_policy_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-style pessimistic loss on the per-step importance ratio. Returns (loss, ratio)."""
    ratio = torch.exp(log_prob - old_log_prob)
    return torch.mean(clipped_policy_terms(ratio, advantages, clip_range, clip_range)), ratio


def gaussian_mean_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std_dev_t: torch.Tensor) -> torch.Tensor:
    """Per-sample KL between two Gaussians sharing a std: ``mean((mu - mu_ref)^2) / (2 std_t^2)``.

    Like Flow-GRPO this divides by `std_dev_t^2` without the `dt` of the closed form, so late steps are not
    down-weighted (its β is tuned for that form).
    """
    dims = tuple(range(1, mean.ndim))
    return ((mean - ref_mean) ** 2).mean(dim=dims) / (2 * std_dev_t.reshape(-1) ** 2)

"""Rectified-flow sampling pieces: shifted time grid, CFG interval, CFG combination with renorm."""

from __future__ import annotations

import torch

RENORM_TYPES = ("global", "channel", "text_channel")


def shifted_timesteps(num_timesteps: int, shift: float) -> torch.Tensor:
    """`linspace(1, 0, n)` warped by `s*t / (1 + (s-1)*t)`, in float32 like the official sampler."""
    t = torch.linspace(1, 0, num_timesteps)
    return shift * t / (1 + (shift - 1) * t)


def cfg_active(t: torch.Tensor, interval: tuple[float, float]) -> bool:
    """CFG applies when lo < t <= hi, compared in float32 (the dtype of t)."""
    lo = torch.tensor(interval[0], dtype=t.dtype)
    hi = torch.tensor(interval[1], dtype=t.dtype)
    return bool((t > lo) & (t <= hi))


def _ratio(reference: torch.Tensor, guided: torch.Tensor, per_token: bool, minimum: float) -> torch.Tensor:
    if per_token:
        ref, cur = reference.norm(dim=-1, keepdim=True), guided.norm(dim=-1, keepdim=True)
    else:
        ref, cur = reference.norm(), guided.norm()
    return (ref / (cur + 1e-8)).clamp(min=minimum, max=1.0)


def combine_cfg(
    v_cond: torch.Tensor,
    v_uncond_text: torch.Tensor | None,
    v_uncond_img: torch.Tensor | None,
    *,
    text_scale: float,
    img_scale: float,
    renorm_type: str,
    renorm_min: float,
) -> torch.Tensor:
    """Text CFG, then image CFG, with BAGEL's norm rescaling (v: [N, C] of one image).

    `global`/`channel` rescale the final velocity to at most the conditional norm (whole image / per
    token); `text_channel` rescales the text-guided velocity per token before image CFG and not after.
    """
    if renorm_type not in RENORM_TYPES:
        raise ValueError(f"cfg_renorm_type must be one of {RENORM_TYPES}, got {renorm_type!r}")
    if text_scale <= 1.0 or v_uncond_text is None:
        return v_cond
    v_text = v_uncond_text + text_scale * (v_cond - v_uncond_text)
    if renorm_type == "text_channel":
        v_text = v_text * _ratio(v_cond, v_text, True, renorm_min)
    v = v_text
    if img_scale > 1.0 and v_uncond_img is not None:
        v = v_uncond_img + img_scale * (v_text - v_uncond_img)
    if renorm_type != "text_channel":
        v = v * _ratio(v_cond, v, renorm_type == "channel", renorm_min)
    return v

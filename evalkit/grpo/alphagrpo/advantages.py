"""Advantages exactly as AlphaGRPO's `compute_advantages` + `PerPromptStatTracker` (global std).

Rewards arrive as float32 values gathered over all ranks in rank order. Per prompt:
``A = (r - mean_prompt) / (std + 1e-4)`` in float64, with the population std of the whole gathered batch
(`global_std`, the presets) or of the prompt's group. A round whose advantages are all exactly 0 is
skipped. Rank k keeps its slice ``A.reshape(world, -1)[k]``, repeated over the trained timesteps; the
think-text step uses the same advantages unless the text reward is isolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evalkit.grpo.advantages import STD_EPS, PerPromptStatTracker


@dataclass(frozen=True)
class AdvantageConfig:
    per_prompt_stat_tracking: bool = True
    global_std: bool = True
    think: bool = True
    num_train_timesteps: int = 5
    stage1_reward_as_group_mean: bool = False
    isolate_image_text_reward: bool = False
    mask_image_adv_w_negative_think_text: bool = False
    reflect_think_text_format: bool = False


@dataclass
class Advantages:
    """One rank's result; `advantages` [B_local, T] is None when the round is skipped."""

    should_skip: bool
    advantages: np.ndarray | None = None
    text_advantages: np.ndarray | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _as_f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def prompt_std_stats(prompts: Sequence[str], rewards: np.ndarray) -> tuple[float, float]:
    """(share of prompts whose rewards have zero population std, mean of those stds)."""
    arr = np.asarray(list(prompts), dtype=object)
    stds = [float(np.std(rewards[arr == p])) for p in dict.fromkeys(prompts)]
    return float(np.mean([s == 0 for s in stds])), float(np.mean(stds))


def _with_group_means(prompts, rewards, means: Mapping[str, float], global_std: bool) -> np.ndarray:
    """Advantages against given per-prompt means (`stage1_reward_as_group_mean`)."""
    arr = np.asarray(list(prompts), dtype=object)
    rewards64 = rewards.astype(np.float64)
    out = np.empty_like(rewards64)
    batch_std = np.std(rewards64) + STD_EPS
    for prompt in dict.fromkeys(prompts):
        mask = arr == prompt
        std = batch_std if global_std else np.std(rewards64[mask]) + STD_EPS
        out[mask] = (rewards64[mask] - means[prompt]) / std
    return out


def _rank_slice(values: np.ndarray, world_size: int, rank: int) -> np.ndarray:
    return values.reshape(world_size, -1, 1)[rank]


def compute_advantages(
    prompts: Sequence[str],
    rewards: Sequence[float],
    config: AdvantageConfig,
    *,
    world_size: int = 1,
    rank: int = 0,
    tracker: PerPromptStatTracker | None = None,
    text_rewards: Sequence[float] | None = None,
    local_extra: Mapping[str, Sequence[float]] | None = None,
    prompts_mean: Mapping[str, float] | None = None,
    think_texts: Sequence[str] | None = None,
) -> Advantages:
    """Advantages of rank `rank` from the gathered `prompts` and `rewards` (all ranks, rank order).

    `tracker` keeps the prompts seen over the run (`trained_prompt_num`); `text_rewards` (gathered) are
    used with `isolate_image_text_reward`; `local_extra` holds this rank's `think_text_reward` /
    `reflective_think_text_reward` for the negative-think mask; `think_texts` (gathered) only feed the
    logged mean think length.
    """
    gathered = _as_f32(rewards)
    tracker = tracker or PerPromptStatTracker(global_std=config.global_std)
    metrics: dict[str, float] = {}
    text_adv = None
    if config.per_prompt_stat_tracking:
        adv = tracker.update(list(prompts), gathered)
        if prompts_mean is not None and config.stage1_reward_as_group_mean:
            adv = _with_group_means(prompts, gathered, prompts_mean, config.global_std)
        group_size, trained = tracker.get_stats()
        zero_std_ratio, reward_std_mean = prompt_std_stats(prompts, gathered)
        if rank == 0:
            metrics = {
                "group_size": float(group_size),
                "trained_prompt_num": trained,
                "zero_std_ratio": zero_std_ratio,
                "reward_std_mean": reward_std_mean,
            }
            if config.think and think_texts is not None:
                metrics["think_text_length"] = float(np.mean([len(t.split(" ")) for t in think_texts]))
        tracker.clear()
        if config.isolate_image_text_reward and text_rewards is not None:
            text_all = tracker.update(list(prompts), _as_f32(text_rewards))
            tracker.clear()
            text_adv = _rank_slice(text_all, world_size, rank)
    else:
        adv = (gathered - gathered.mean()) / (gathered.std() + np.float32(STD_EPS))
    if np.abs(adv).sum() == 0:
        return Advantages(True, metrics=metrics)
    local = np.repeat(_rank_slice(adv, world_size, rank), config.num_train_timesteps, axis=1)
    if text_adv is None and config.think:
        text_adv = local
    if config.think and config.mask_image_adv_w_negative_think_text:
        extra = local_extra or {}
        negative = np.asarray(extra["think_text_reward"]) < 0
        if config.reflect_think_text_format:
            negative = negative | (np.asarray(extra["reflective_think_text_reward"]) < 0)
        local = local * (~negative)[:, None].astype(np.float32)
    return Advantages(False, local, text_adv, metrics)

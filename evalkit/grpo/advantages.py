"""Group-relative advantages: per-prompt mean, (global) std, clipping and zero-variance filtering.

GRPO needs no value network: a sample's advantage is its reward relative to the other samples drawn for the
same prompt. Flow-GRPO divides by the std of *all* rewards in the batch (``global_std=True``), which keeps
groups with a tiny spread from being blown up into large advantages. Statistics use numpy float64 and the
population std (ddof 0), as the reference tracker does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STD_EPS = 1e-4


class TrackerNotClearedError(AttributeError):
    """`update()` was called twice without `clear()`.

    The reference tracker fails here too (with an AttributeError from numpy), so this subclasses
    AttributeError for parity; the trainer clears the tracker after every epoch.
    """


class PerPromptStatTracker:
    """Per-prompt reward statistics for one epoch of rollouts.

    `update()` returns the advantages of a batch; `clear()` forgets the rewards (call it every epoch) but
    keeps the set of prompts ever seen, which `get_stats()` reports.
    """

    def __init__(self, global_std: bool = True):
        self.global_std = global_std
        self.stats: dict[str, list[float]] = {}
        self._updated = False
        self.history_prompts: set[int] = set()

    def update(self, prompts: Sequence[str], rewards: Sequence[float] | np.ndarray) -> np.ndarray:
        if self._updated:
            raise TrackerNotClearedError("PerPromptStatTracker.update() called twice; call clear() first")
        prompts_arr = np.array(list(prompts), dtype=object)
        rewards_arr = np.asarray(rewards, dtype=np.float64)
        advantages = np.empty_like(rewards_arr)
        for prompt in dict.fromkeys(prompts_arr.tolist()):
            self.stats.setdefault(prompt, []).extend(rewards_arr[prompts_arr == prompt].tolist())
            self.history_prompts.add(hash(prompt))
        global_std = np.std(rewards_arr, axis=0, keepdims=True) + STD_EPS
        for prompt, group in self.stats.items():
            group_arr = np.asarray(group, dtype=np.float64)
            mean = np.mean(group_arr, axis=0, keepdims=True)
            std = global_std if self.global_std else np.std(group_arr, axis=0, keepdims=True) + STD_EPS
            mask = prompts_arr == prompt
            advantages[mask] = (rewards_arr[mask] - mean) / std
        self._updated = True
        return advantages

    def clear(self) -> None:
        self.stats = {}
        self._updated = False

    def get_stats(self) -> tuple[float, int]:
        """(average group size, number of distinct prompts seen since construction)."""
        avg_group_size = sum(len(v) for v in self.stats.values()) / len(self.stats) if self.stats else 0.0
        return avg_group_size, len(self.history_prompts)


def group_advantages(
    prompts: Sequence[str], rewards: Sequence[float] | np.ndarray, global_std: bool = True
) -> np.ndarray:
    """Advantages of one batch of rollouts grouped by prompt (a fresh tracker each call)."""
    return PerPromptStatTracker(global_std=global_std).update(prompts, rewards)


def batch_advantages(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """Advantages without per-prompt grouping: ``(r - mean) / (std + 1e-4)`` over the batch."""
    rewards_arr = np.asarray(rewards, dtype=np.float64)
    return (rewards_arr - rewards_arr.mean()) / (rewards_arr.std() + STD_EPS)


def clip_advantages(advantages: np.ndarray, clip_max: float) -> np.ndarray:
    return np.clip(advantages, -clip_max, clip_max)


def informative_mask(advantages: np.ndarray) -> np.ndarray:
    """True for samples worth training on: groups with zero reward variance give all-zero advantages."""
    adv = np.asarray(advantages)
    return np.abs(adv.reshape(adv.shape[0], -1)).sum(axis=1) != 0

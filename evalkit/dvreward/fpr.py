"""False-positive rectification (FPR) for training with self-reflective refinement.

A refinement is only rewarded for improving on the image it started from. In AlphaGRPO (`# FPR`,
`clamp_no_improve_reward`), a refined image whose reward is not above its initial image's reward gets the
minimum initial reward of its prompt group, so a refinement that changes nothing (or makes things worse)
gets the group's floor and a negative advantage instead of riding on a good initial image. When no
refinement in the batch improves, the round carries no signal and is skipped.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rectified:
    """Rewards after FPR, which entries were rectified, and whether the round should be skipped."""

    rewards: list[float | None]
    rectified: list[bool]
    skip_round: bool


def rectify(
    initial: Sequence[float | None],
    refined: Sequence[float | None],
    groups: Sequence[Hashable] | None = None,
) -> Rectified:
    """Apply FPR to refined rewards; `groups[i]` names the prompt group of entry i (default: one group).

    An abstained refined reward (None) stays None. An entry whose initial reward is None cannot be compared
    and keeps its refined reward. The group floor is the minimum over the group's known initial rewards.
    """
    if len(initial) != len(refined):
        raise ValueError(f"{len(initial)} initial rewards for {len(refined)} refined ones")
    groups = list(groups) if groups is not None else [0] * len(initial)
    if len(groups) != len(initial):
        raise ValueError(f"{len(groups)} group ids for {len(initial)} rewards")
    floors: dict[Hashable, float] = {}
    for group, value in zip(groups, initial, strict=True):
        if value is not None:
            floors[group] = min(value, floors.get(group, value))
    rewards: list[float | None] = []
    rectified: list[bool] = []
    improved = False
    for group, before, after in zip(groups, initial, refined, strict=True):
        if after is None or before is None:
            rewards.append(after)
            rectified.append(False)
            continue
        if after > before:
            improved = True
            rewards.append(after)
            rectified.append(False)
        else:
            rewards.append(floors[group])
            rectified.append(True)
    comparable = any(a is not None and b is not None for a, b in zip(initial, refined, strict=True))
    return Rectified(rewards, rectified, skip_round=comparable and not improved)

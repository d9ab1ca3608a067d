"""Reward models and metrics behind one Scorer interface (used by `evalkit score` and the GRPO trainer)."""

from evalkit.rewards.base import Scorer

__all__ = ["Scorer"]

"""Compact Flow-GRPO for diffusers: SDE log-probs, group advantages, trainer, reward ablation."""

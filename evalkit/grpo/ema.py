"""Exponential moving average of the trainable (LoRA) weights, as Flow-GRPO keeps it.

The EMA weights are what evaluation and saved LoRAs use: GRPO updates are noisy and the average is a
steadier policy. Only the LoRA tensors are averaged, so the cost is negligible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


class LoRAEMA:
    """EMA with warm-up decay ``min((1 + n) / (10 + n), decay)``, updated every `update_interval` steps."""

    def __init__(
        self, parameters: Iterable[torch.nn.Parameter], decay: float = 0.9, update_interval: int = 8
    ):
        self.decay = decay
        self.update_interval = update_interval
        self.shadow = [p.detach().clone().float() for p in parameters]

    def current_decay(self, optimizer_step: int) -> float:
        return min((1 + optimizer_step) / (10 + optimizer_step), self.decay)

    @torch.no_grad()
    def step(self, parameters: Iterable[torch.nn.Parameter], optimizer_step: int) -> bool:
        """Fold the current weights in after optimiser step number `optimizer_step` (0-based)."""
        if (optimizer_step + 1) % self.update_interval != 0:
            return False
        decay = self.current_decay(optimizer_step)
        for shadow, param in zip(self.shadow, parameters, strict=True):
            shadow.mul_(decay).add_(param.detach().float(), alpha=1 - decay)
        return True

    @contextmanager
    def applied(self, parameters: Iterable[torch.nn.Parameter]) -> Iterator[None]:
        """Temporarily load the EMA weights into `parameters` (restored on exit)."""
        params = list(parameters)
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, shadow in zip(params, self.shadow, strict=True):
                p.copy_(shadow.to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, saved in zip(params, backup, strict=True):
                    p.copy_(saved)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "update_interval": self.update_interval, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.update_interval = state["update_interval"]
        self.shadow = [s.clone().float() for s in state["shadow"]]

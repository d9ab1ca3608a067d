"""The few collectives AlphaGRPO needs (all-gather of Python lists, gradient averaging, barrier).

Single-process runs need no process group; under `torchrun` / `accelerate launch` an initialised
`torch.distributed` group (gloo on CPU, NCCL on GPU) is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


class Comm:
    def __init__(self) -> None:
        self.active = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size() if self.active else 1
        self.rank = dist.get_rank() if self.active else 0

    def gather(self, values: Sequence[Any]) -> list[Any]:
        """Every rank's list concatenated in rank order (equal lengths, like accelerate's gather)."""
        if not self.active:
            return list(values)
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, list(values))
        return [v for part in parts for v in part]

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """In-place mean over ranks (what DDP does to gradients)."""
        if not self.active:
            return
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(self.world_size)

    def mean(self, value: float) -> float:
        if not self.active:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t[0]) / self.world_size

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (e.g. a table only rank 0 could compute)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

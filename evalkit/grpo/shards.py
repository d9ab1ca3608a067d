"""Training state split over processes by FSDP2, saved and restored per rank (Flow-GRPO and AlphaGRPO).

A checkpoint written by several processes holds, next to rank 0's whole-run state, one `rank<r>.pt` per
process: its RNG and, under FSDP, its own shards of the LoRA and the optimizer state (what
`torch.distributed.checkpoint` would write per rank, as plain tensors). Shards go back into the layout that
wrote them, so an FSDP checkpoint resumes only with the same process count and FSDP again; a data-parallel
one (whole optimizer state on rank 0) with any process count but not under FSDP. `check_layout` says so in
one line instead of failing deep inside `load_state_dict`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalkit.errors import EvalkitError

FSDP = "fsdp"  # optimizer state sharded per rank (rank<r>.pt)
DATA = "data"  # one process or data parallel: the whole optimizer state in trainer_state.pt


def is_sharded(t: torch.Tensor | None) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a sharded one: every rank must call it)."""
    return t.full_tensor() if is_sharded(t) else t


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a sharded tensor (a view of its storage), else the tensor."""
    return t.to_local() if is_sharded(t) else t


def like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A saved local shard turned back into a shard of `param`'s layout (unchanged when `param` is whole)."""
    if not is_sharded(param):
        return value
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(value.to(param.device), param.device_mesh, param.placements)


def local_state(value: Any) -> Any:
    """An optimizer state dict with every sharded tensor replaced by this rank's shard (picklable)."""
    if isinstance(value, dict):
        return {k: local_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [local_state(v) for v in value]
    if isinstance(value, torch.Tensor):
        return local(value).detach().clone()
    return value


def reshard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After `load_state_dict` of a `local_state`: state tensors become shards like their parameters."""
    for param, state in optimizer.state.items():
        if not is_sharded(param):
            continue
        for key, value in state.items():
            if (
                isinstance(value, torch.Tensor)
                and not is_sharded(value)
                and value.shape == local(param).shape
            ):
                state[key] = like(value, param)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])


def rank_file(folder: Path, rank: int) -> Path:
    return Path(folder) / f"rank{rank}.pt"


def load_rank_state(folder: Path, rank: int, rng: dict[str, Any]) -> dict[str, Any]:
    """This rank's `rank<r>.pt`, or just `rng` (rank 0's, from trainer_state.pt) where none was written
    (a data-parallel checkpoint resumed by more processes than wrote it)."""
    path = rank_file(folder, rank)
    return torch.load(path, weights_only=False) if path.exists() else {"rng": rng}


def check_layout(folder: Path, saved: tuple[str, int], now: tuple[str, int], fsdp_config: str) -> None:
    """Refuse, in one line with the fix, a resume whose (layout, process count) cannot take the saved state."""
    (layout, processes), (here, count) = saved, now
    if layout == FSDP and here != FSDP:
        raise EvalkitError(
            f"{folder} holds FSDP shards of {processes} process(es); resume it under FSDP: accelerate launch "
            f"--config_file {fsdp_config} --num_processes {processes}"
        )
    if layout == FSDP and processes != count:
        raise EvalkitError(
            f"{folder} holds FSDP shards of {processes} process(es), this run has {count}; resume it with "
            f"--num_processes {processes}"
        )
    if layout != FSDP and here == FSDP:
        raise EvalkitError(
            f"{folder} was written without FSDP (whole optimizer state); resume it without {fsdp_config} "
            "(DDP or one process, any process count)"
        )

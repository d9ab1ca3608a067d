"""Saving and resuming the AlphaGRPO trainer: the adapter for inference (PEFT layout, loadable by the
`alphagrpo` generator) and everything an exact resume needs.

`trainer_state.pt` holds the whole LoRA and the run's state; with several processes each rank adds
`rank<r>.pt` (its RNG, and under FSDP its LoRA and optimizer shards). Both functions run on every rank:
gathering sharded LoRA tensors is a collective.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evalkit.errors import EvalkitError
from evalkit.grpo.alphagrpo import parallel

AlphaGRPOTrainer = Any  # alphagrpo.trainer.AlphaGRPOTrainer (not imported: it imports this module)


def save_checkpoint(trainer: AlphaGRPOTrainer, folder: Path) -> Path:
    """The adapter and `trainer_state.pt` (rank 0), each rank's `rank<r>.pt` when there are several."""
    folder.mkdir(parents=True, exist_ok=True)
    lora = {n: parallel.full(v).clone() for n, v in trainer.model.lora_state().items()}  # all ranks
    if trainer.comm.rank == 0:
        trainer.model.save_adapter(folder / "adapter", state=lora)
        torch.save(_state(trainer, lora), folder / "trainer_state.pt")
    if trainer.comm.world_size > 1:
        torch.save(_rank_state(trainer), folder / f"rank{trainer.comm.rank}.pt")
    trainer.comm.barrier()
    return folder


def _state(trainer: AlphaGRPOTrainer, lora: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {
        "step": trainer.step,
        "processes": trainer.comm.world_size,
        "lora": lora,
        "optimizer": None if trainer.sharded else trainer.optimizer.state_dict(),
        "history": trainer.history,
        "abstained_total": trainer.abstained_total,
        "tracker_history": sorted(trainer.tracker.history_prompts),
        "rng": _rng_state(),
    }


def _rank_state(trainer: AlphaGRPOTrainer) -> dict[str, Any]:
    state: dict[str, Any] = {"rng": _rng_state()}
    if trainer.sharded:
        state["lora"] = {n: parallel.local(v).clone() for n, v in trainer.model.lora_state().items()}
        state["optimizer"] = parallel.local_state(trainer.optimizer.state_dict())
    return state


def resume(trainer: AlphaGRPOTrainer, folder: str | Path) -> None:
    """LoRA, optimizer, step, history, per-prompt tracker and RNG as saved; an FSDP checkpoint only with
    the process count that wrote it."""
    folder = Path(folder)
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    saved = state.get("processes", 1)
    if saved != trainer.comm.world_size and (trainer.sharded or state["optimizer"] is None):
        raise EvalkitError(f"{folder} was written by {saved} FSDP process(es); resume it with {saved}")
    mine = folder / f"rank{trainer.comm.rank}.pt"
    rank_state = torch.load(mine, weights_only=False) if mine.exists() else {"rng": state["rng"]}
    if trainer.sharded:
        if "optimizer" not in rank_state:
            raise EvalkitError(f"{folder} holds no FSDP shards; resume it without fsdp.yaml")
        trainer.model.load_lora_state(rank_state["lora"])
        trainer.optimizer.load_state_dict(rank_state["optimizer"])
        parallel.reshard_optimizer_state(trainer.optimizer)
    else:
        trainer.model.load_lora_state(state["lora"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.step, trainer.history = state["step"], list(state["history"])
    trainer.abstained_total = state["abstained_total"]
    trainer.tracker.history_prompts = set(state["tracker_history"])
    rng = rank_state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}

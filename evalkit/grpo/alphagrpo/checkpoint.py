"""Saving and resuming the AlphaGRPO trainer: the adapter for inference (PEFT layout, loadable by the
`alphagrpo` generator) and everything an exact resume needs.

`trainer_state.pt` holds the whole LoRA and the run's state; with several processes each rank adds
`rank<r>.pt` (its RNG, and under FSDP its LoRA and optimizer shards), as `evalkit.grpo.shards` lays them
out for Flow-GRPO too. Both functions run on every rank: gathering sharded LoRA tensors is a collective.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from evalkit.grpo import shards

AlphaGRPOTrainer = Any  # alphagrpo.trainer.AlphaGRPOTrainer (not imported: it imports this module)


def save_checkpoint(trainer: AlphaGRPOTrainer, folder: Path) -> Path:
    """The adapter and `trainer_state.pt` (rank 0), each rank's `rank<r>.pt` when there are several."""
    folder.mkdir(parents=True, exist_ok=True)
    lora = {n: shards.full(v).clone() for n, v in trainer.model.lora_state().items()}  # all ranks
    if trainer.comm.rank == 0:
        trainer.model.save_adapter(folder / "adapter", state=lora)
        torch.save(_state(trainer, lora), folder / "trainer_state.pt")
    if trainer.comm.world_size > 1:
        torch.save(_rank_state(trainer), shards.rank_file(folder, trainer.comm.rank))
    trainer.comm.barrier()
    return folder


def _state(trainer: AlphaGRPOTrainer, lora: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {
        "step": trainer.step,
        "processes": trainer.comm.world_size,
        "layout": shards.FSDP if trainer.sharded else shards.DATA,
        "lora": lora,
        "optimizer": None if trainer.sharded else trainer.optimizer.state_dict(),
        "history": trainer.history,
        "abstained_total": trainer.abstained_total,
        "tracker_history": sorted(trainer.tracker.history_prompts),
        "rng": shards.rng_state(),
    }


def _rank_state(trainer: AlphaGRPOTrainer) -> dict[str, Any]:
    state: dict[str, Any] = {"rng": shards.rng_state()}
    if trainer.sharded:
        state["lora"] = {n: shards.local(v).clone() for n, v in trainer.model.lora_state().items()}
        state["optimizer"] = shards.local_state(trainer.optimizer.state_dict())
    return state


def resume(trainer: AlphaGRPOTrainer, folder: str | Path) -> None:
    """LoRA, optimizer, step, history, per-prompt tracker and RNG as saved; an FSDP checkpoint only with
    the process count that wrote it."""
    folder = Path(folder)
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    layout = state.get("layout", shards.DATA if state["optimizer"] is not None else shards.FSDP)
    here = shards.FSDP if trainer.sharded else shards.DATA
    fsdp_config = "evalkit/grpo/alphagrpo/accelerate/fsdp.yaml"
    shards.check_layout(
        folder, (layout, state.get("processes", 1)), (here, trainer.comm.world_size), fsdp_config
    )
    rank_state = shards.load_rank_state(folder, trainer.comm.rank, state["rng"])
    if trainer.sharded:
        trainer.model.load_lora_state(rank_state["lora"])
        trainer.optimizer.load_state_dict(rank_state["optimizer"])
        shards.reshard_optimizer_state(trainer.optimizer)
    else:
        trainer.model.load_lora_state(state["lora"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.step, trainer.history = state["step"], list(state["history"])
    trainer.abstained_total = state["abstained_total"]
    trainer.tracker.history_prompts = set(state["tracker_history"])
    shards.set_rng_state(rank_state["rng"])

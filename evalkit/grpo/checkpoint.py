"""Saving and resuming the Flow-GRPO trainer: the LoRA for inference (EMA weights, diffusers layout) and the
raw LoRA, optimiser and EMA state for an exact resume.

`trainer_state.pt` (main process) holds the whole LoRA and the run's state; with several processes each rank
adds `rank<r>.pt` (its RNG and, under FSDP, its shards of the LoRA, the AdamW state and the EMA), laid out
by `evalkit.grpo.shards` as AlphaGRPO's checkpoints are. Every function is called on every process: under
FSDP gathering the LoRA is a collective; each process writes only its own files.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from evalkit.errors import EvalkitError
from evalkit.grpo import shards

GRPOTrainer = Any  # evalkit.grpo.trainer.GRPOTrainer (not imported: the trainer imports this module)

STATE_FILE = "trainer_state.pt"
LORA_DIR = "lora"
DEEPSPEED = "deepspeed"  # ZeRO partitions the optimizer state inside its engine: not saved
FSDP_CONFIG = "reward_ablation/accelerate/fsdp.yaml"


def layout(accelerator) -> str:
    """How a run holds its optimizer state: whole (`data`), FSDP2 shards (`fsdp`) or DeepSpeed's."""
    kind = str(accelerator.distributed_type).split(".")[-1]
    if kind == "DEEPSPEED":
        return DEEPSPEED
    if kind == "FSDP":
        if getattr(accelerator.state.fsdp_plugin, "fsdp_version", 1) != 2:
            raise EvalkitError(
                "Flow-GRPO checkpoints under FSDP need FSDP2: set fsdp_version: 2 in the config"
            )
        return shards.FSDP
    return shards.DATA


def lora_state_dict(trainer: GRPOTrainer, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """LoRA weights in diffusers' transformer LoRA layout (EMA weights when kept and asked for)."""
    from peft.utils import get_peft_model_state_dict

    params = trainer.lora_parameters()
    context = trainer.ema.applied(params) if (use_ema and trainer.ema is not None) else nullcontext()
    with context:
        state = get_peft_model_state_dict(trainer.unwrapped)
        return {k: shards.full(v.detach()).cpu().clone() for k, v in state.items()}


def save_lora(trainer: GRPOTrainer, folder: str | Path, use_ema: bool = True) -> Path:
    """Save a LoRA that `StableDiffusion3Pipeline.load_lora_weights(folder)` loads."""
    from diffusers import StableDiffusion3Pipeline

    folder = Path(folder)
    state = lora_state_dict(trainer, use_ema)
    if trainer.accelerator.is_main_process:
        StableDiffusion3Pipeline.save_lora_weights(folder, transformer_lora_layers=state)
    return folder


def save_checkpoint(trainer: GRPOTrainer, folder: str | Path | None = None) -> Path:
    """Checkpoint = LoRA (EMA) for inference + raw LoRA, optimiser and EMA state for resuming (under FSDP
    each rank's shards in its `rank<r>.pt`; under DeepSpeed without the optimiser state, see `load_checkpoint`)."""
    folder = Path(folder) if folder else trainer.output_dir / "checkpoints" / f"checkpoint-{trainer.epoch}"
    acc = trainer.accelerator
    kind = layout(acc)
    acc.wait_for_everyone()
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    save_lora(trainer, folder / LORA_DIR)
    lora = {
        n: shards.full(p.detach()).cpu().clone()
        for n, p in zip(trainer.lora_names, trainer.lora_parameters(), strict=True)
    }
    if acc.is_main_process:
        state = {
            "epoch": trainer.epoch,
            "global_step": trainer.global_step,
            "processes": acc.num_processes,
            "layout": kind,
            "lora": lora,
            "optimizer": trainer.optimizer.state_dict() if kind == shards.DATA else None,
            "ema": trainer.ema.state_dict() if trainer.ema is not None and kind != shards.FSDP else None,
            "config": trainer.config.to_dict(),
            "rng": shards.rng_state(),
        }
        _save(state, folder / STATE_FILE)
    acc.wait_for_everyone()  # the folder exists
    if acc.num_processes > 1:
        _save(_rank_state(trainer, kind), shards.rank_file(folder, acc.process_index))
    acc.wait_for_everyone()
    return folder


def _save(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _rank_state(trainer: GRPOTrainer, kind: str) -> dict[str, Any]:
    state: dict[str, Any] = {"rng": shards.rng_state()}
    if kind == shards.FSDP:
        params = trainer.lora_parameters()
        state["lora"] = [shards.local(p.detach()).cpu().clone() for p in params]
        state["optimizer"] = shards.local_state(trainer.optimizer.state_dict())
        if trainer.ema is not None:
            state["ema"] = {
                **trainer.ema.state_dict(),
                "shadow": [shards.local(s).cpu() for s in trainer.ema.shadow],
            }
    return state


def check_resume(folder: str | Path, accelerator) -> dict[str, Any]:
    """The checkpoint's `trainer_state.pt`, if this run's layout can take it (checked before any model loads:
    a DeepSpeed checkpoint, resuming under DeepSpeed, FSDP shards under another process count or without
    FSDP, and a whole optimiser state under FSDP are each refused in one line)."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise EvalkitError(f"{folder} holds no {STATE_FILE}: resume from a checkpoints/checkpoint-N folder")
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    kind = layout(accelerator)
    saved = state.get("layout", shards.DATA if state["optimizer"] is not None else None)
    if saved is None or saved == DEEPSPEED:
        raise EvalkitError(
            f"{folder} was written under {'DeepSpeed' if saved else 'FSDP or DeepSpeed by an older evalkit'} "
            "and lacks the optimiser state, so it cannot resume; start a new run from its lora/ folder"
        )
    if kind == DEEPSPEED:
        raise EvalkitError(
            "resuming under DeepSpeed is not supported (evalkit cannot load an optimiser state into ZeRO's "
            f"partitions); resume {folder} with reward_ablation/accelerate/ddp.yaml or {FSDP_CONFIG}"
        )
    processes = accelerator.num_processes
    shards.check_layout(folder, (saved, state.get("processes", 1)), (kind, processes), FSDP_CONFIG)
    return state


def load_checkpoint(trainer: GRPOTrainer, folder: str | Path) -> None:
    """Restore LoRA, optimiser, EMA, step and RNG as saved (this rank's shards under FSDP)."""
    acc = trainer.accelerator
    state = check_resume(folder, acc)
    folder, kind = Path(folder), layout(acc)
    rank_state = shards.load_rank_state(folder, acc.process_index, state.get("rng"))
    if kind == shards.FSDP and "optimizer" not in rank_state:
        raise EvalkitError(
            f"{shards.rank_file(folder, acc.process_index)} is missing: copy the whole checkpoint"
        )
    params = trainer.lora_parameters()
    with torch.no_grad():
        if kind == shards.FSDP:
            for param, value in zip(params, rank_state["lora"], strict=True):
                shards.local(param).copy_(value)
        else:
            for name, param in zip(trainer.lora_names, params, strict=True):
                param.copy_(state["lora"][name].to(param.device, param.dtype))
    if kind == shards.FSDP:
        trainer.optimizer.load_state_dict(rank_state["optimizer"])
        shards.reshard_optimizer_state(trainer.optimizer.optimizer)
    else:
        trainer.optimizer.load_state_dict(state["optimizer"])
    ema = rank_state.get("ema") if kind == shards.FSDP else state["ema"]
    if trainer.ema is not None and ema is not None:
        trainer.ema.load_state_dict(ema)
        trainer.ema.shadow = [
            shards.like(s.to(p.device), p) for s, p in zip(trainer.ema.shadow, params, strict=True)
        ]
    trainer.epoch = state["epoch"]
    trainer.global_step = state["global_step"]
    if rank_state.get("rng") is not None:
        shards.set_rng_state(rank_state["rng"])


def resolve_resume(output_dir: Path, resume_from: str) -> Path:
    """`resume_from` as a folder; 'latest' is the newest checkpoint under `output_dir`."""
    if resume_from != "latest":
        return Path(resume_from)
    found = sorted(
        (output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    if not found:
        raise FileNotFoundError(f"no checkpoint under {output_dir / 'checkpoints'}")
    return found[-1]

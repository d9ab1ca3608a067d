"""Saving and resuming the Flow-GRPO trainer: the LoRA for inference (EMA weights, diffusers layout) and the
raw LoRA, optimiser and EMA state for an exact resume.

Every function is called on every process: under FSDP the LoRA tensors are shards, and gathering them is a
collective; only the main process writes files.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from evalkit.grpo.distributed import full_tensor

GRPOTrainer = Any  # evalkit.grpo.trainer.GRPOTrainer (not imported: the trainer imports this module)

STATE_FILE = "trainer_state.pt"
LORA_DIR = "lora"


def _sharded_optimizer(trainer: GRPOTrainer) -> bool:
    """FSDP and DeepSpeed keep a shard of the optimiser state on each process."""
    return str(trainer.accelerator.distributed_type).split(".")[-1] in ("FSDP", "DEEPSPEED")


def lora_state_dict(trainer: GRPOTrainer, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """LoRA weights in diffusers' transformer LoRA layout (EMA weights when kept and asked for)."""
    from peft.utils import get_peft_model_state_dict

    params = trainer.lora_parameters()
    context = trainer.ema.applied(params) if (use_ema and trainer.ema is not None) else nullcontext()
    with context:
        state = get_peft_model_state_dict(trainer.unwrapped)
        return {k: full_tensor(v.detach()).cpu().clone() for k, v in state.items()}


def save_lora(trainer: GRPOTrainer, folder: str | Path, use_ema: bool = True) -> Path:
    """Save a LoRA that `StableDiffusion3Pipeline.load_lora_weights(folder)` loads."""
    from diffusers import StableDiffusion3Pipeline

    folder = Path(folder)
    state = lora_state_dict(trainer, use_ema)
    if trainer.accelerator.is_main_process:
        StableDiffusion3Pipeline.save_lora_weights(folder, transformer_lora_layers=state)
    return folder


def save_checkpoint(trainer: GRPOTrainer, folder: str | Path | None = None) -> Path:
    """Checkpoint = LoRA (EMA) for inference + raw LoRA, optimiser and EMA state for resuming. Under FSDP or
    DeepSpeed the optimiser state is sharded and not saved (such a checkpoint is refused for resuming)."""
    folder = Path(folder) if folder else trainer.output_dir / "checkpoints" / f"checkpoint-{trainer.epoch}"
    acc = trainer.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    save_lora(trainer, folder / LORA_DIR)
    lora = {
        n: full_tensor(p.detach()).cpu().clone()
        for n, p in zip(trainer.lora_names, trainer.lora_parameters(), strict=True)
    }
    if acc.is_main_process:
        state = {
            "epoch": trainer.epoch,
            "global_step": trainer.global_step,
            "lora": lora,
            "optimizer": None if _sharded_optimizer(trainer) else trainer.optimizer.state_dict(),
            "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
            "config": trainer.config.to_dict(),
        }
        tmp = folder / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(folder / STATE_FILE)
    acc.wait_for_everyone()
    return folder


def load_checkpoint(trainer: GRPOTrainer, folder: str | Path) -> None:
    state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
    if state["optimizer"] is None or _sharded_optimizer(trainer):
        from evalkit.errors import EvalkitError

        raise EvalkitError(
            f"{folder}: resuming is supported under DDP or one process only (FSDP and DeepSpeed shard the "
            "optimiser state, which the checkpoint does not hold); start a new run from its LoRA instead"
        )
    with torch.no_grad():
        for name, param in zip(trainer.lora_names, trainer.lora_parameters(), strict=True):
            param.copy_(state["lora"][name].to(param.device, param.dtype))
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.ema is not None and state["ema"] is not None:
        trainer.ema.load_state_dict(state["ema"])
        trainer.ema.shadow = [s.to(trainer.accelerator.device) for s in trainer.ema.shadow]
    trainer.epoch = state["epoch"]
    trainer.global_step = state["global_step"]


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

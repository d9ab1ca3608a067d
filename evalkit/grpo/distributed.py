"""The Flow-GRPO trainer's accelerate setup: one optimiser step per intended step under DDP, FSDP and DeepSpeed.

Gradient accumulation is accelerate's own: the `Accelerator` is built with `gradient_accumulation_steps` =
minibatches per step x trained timesteps (as `train_sd3.py` builds it), every backward runs inside
`accelerator.accumulate(model)`, and the optimiser is stepped only when `accelerator.sync_gradients`. DDP and
FSDP then skip the gradient all-reduce between boundaries, and DeepSpeed (which steps inside `backward`) is told
the boundary by accelerate, so no backend steps on every micro-batch.
"""

from __future__ import annotations

import os

import torch

from evalkit.grpo.config import GRPOConfig


def accumulation_steps(config: GRPOConfig) -> int:
    """Backward passes per optimiser step: minibatches x trained timesteps. The loss of each backward is
    divided by this number (by accelerate, or by DeepSpeed's engine), as in train_sd3.py."""
    return config.gradient_accumulation_steps * config.num_train_timesteps


def build_accelerator(config: GRPOConfig):
    from accelerate import Accelerator

    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=accumulation_steps(config)
    )
    fsdp_on_cpu(accelerator)
    return accelerator


def fsdp_on_cpu(accelerator) -> None:
    """Honour an FSDP launch config on CPU processes (`ACCELERATE_USE_CPU=true`, gloo), where accelerate
    silently falls back to plain data parallel: FSDP2 runs there, so the sharded path (and its checkpoints)
    is what runs and what CI tests. Called before `prepare`; a no-op anywhere else."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if not asked or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        from evalkit.errors import EvalkitError

        raise EvalkitError("FSDP on CPU processes needs FSDP2: set fsdp_version: 2 in the accelerate config")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    PartialState().distributed_type = DistributedType.FSDP  # both states: accelerate reads either
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def configure_backend(accelerator, config: GRPOConfig) -> None:
    """Before `prepare`: DeepSpeed needs a micro-batch size (no dataloader is prepared) and clips gradients
    itself (accelerate's `clip_grad_norm_` is a no-op there), so both come from the trainer's config."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.train_batch_size
    plugin.deepspeed_config["gradient_clipping"] = config.max_grad_norm


def check_accumulation(accelerator, config: GRPOConfig) -> None:
    """Refuse an accelerator whose accumulation differs from the config's (an accelerate launch config or
    ACCELERATE_GRADIENT_ACCUMULATION_STEPS overrides the value the trainer asks for)."""
    expected = accumulation_steps(config)
    if accelerator.gradient_accumulation_steps != expected:
        from evalkit.errors import EvalkitError

        raise EvalkitError(
            f"accelerate accumulates gradients over {accelerator.gradient_accumulation_steps} backward passes, the "
            f"trainer needs gradient_accumulation_steps x trained timesteps = {config.gradient_accumulation_steps} "
            f"x {config.num_train_timesteps} = {expected}: remove gradient_accumulation_steps from the accelerate "
            "or DeepSpeed config (and ACCELERATE_GRADIENT_ACCUMULATION_STEPS) and set it with --set instead"
        )


def reduce_metrics(accelerator, means: dict[str, float], maxima: dict[str, float]) -> dict[str, float]:
    """Each process's metrics combined over processes (mean of `means`, max of `maxima`; NaN = none on a
    process), so metrics.jsonl describes the whole step and not only rank 0's shard."""
    names = [*means, *maxima]
    local = torch.tensor([*means.values(), *maxima.values()], dtype=torch.float64)
    if accelerator.num_processes > 1:
        local = accelerator.gather(local.to(accelerator.device)[None]).cpu()
    else:
        local = local[None]
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        column = local[:, i][~torch.isnan(local[:, i])]
        if len(column):
            out[name] = float(column.mean() if i < len(means) else column.max())
    return out

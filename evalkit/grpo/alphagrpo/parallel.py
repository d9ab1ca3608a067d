"""How AlphaGRPO spreads over processes: data parallel, or FSDP2 on BAGEL's decoder layers.

`torchrun` or `accelerate launch` start the processes; the trainer reads what the accelerate config asked
for from the environment accelerate sets (`ACCELERATE_USE_FSDP`, `FSDP_*`):

* data parallel (`accelerate/ddp.yaml`, or plain `torchrun`): every rank holds the whole model; the LoRA
  gradients are averaged once per optimizer step (what DDP does at an accumulation boundary);
* FSDP (`accelerate/fsdp.yaml`, `fsdp_version: 2`): `fully_shard` on every decoder layer (both MoT experts,
  frozen weights and LoRA together); gradients are reduce-scattered (averaged) by FSDP itself. Rollouts
  gather every layer once and keep it whole until the rollout ends, because think sampling runs a
  different number of tokens on each rank (a per-forward all-gather would not line up).

DeepSpeed is refused: the official ZeRO-2 shards only the LoRA optimizer state and gradients (about 2 GB
at BAGEL-7B, r 32), and data parallel gives the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from evalkit.errors import EvalkitError
from evalkit.grpo.shards import full, is_sharded, local  # noqa: F401 - the trainer's names for them

DEFAULT_WRAP = "MoTDecoderLayer"


def _true(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Strategy:
    kind: str  # "data" (one process or data parallel) | "fsdp"
    wrap: tuple[str, ...] = (DEFAULT_WRAP,)
    reshard_after_forward: bool = True


def strategy_from_env(env: Mapping[str, str] | None = None) -> Strategy:
    """What `accelerate launch --config_file ...` asked for; one line with the fix for what is not supported."""
    env = os.environ if env is None else env
    if _true(env.get("ACCELERATE_USE_DEEPSPEED")):
        raise EvalkitError(
            "AlphaGRPO does not run under DeepSpeed (ZeRO-2 would shard only the LoRA optimizer state); "
            "use evalkit/grpo/alphagrpo/accelerate/ddp.yaml (same numbers) or fsdp.yaml (shards the weights)"
        )
    if not _true(env.get("ACCELERATE_USE_FSDP")):
        return Strategy("data")
    if env.get("FSDP_VERSION", "1") != "2":
        raise EvalkitError("AlphaGRPO shards with FSDP2: set fsdp_version: 2 in the accelerate config")
    if _true(env.get("FSDP_OFFLOAD_PARAMS")):
        raise EvalkitError("fsdp_offload_params is not supported for AlphaGRPO; set it to false")
    policy = env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    if policy not in ("TRANSFORMER_BASED_WRAP", ""):
        raise EvalkitError(
            f"fsdp_auto_wrap_policy {policy} is not supported for AlphaGRPO; use TRANSFORMER_BASED_WRAP"
        )
    wrap = tuple(c.strip() for c in env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", DEFAULT_WRAP).split(",") if c)
    reshard = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").strip().lower() not in ("false", "0", "no")
    return Strategy("fsdp", wrap or (DEFAULT_WRAP,), reshard)


def check_mixed_precision(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> None:
    """The preset decides the precision; an accelerate config that says otherwise is a mistake."""
    env = os.environ if env is None else env
    asked = env.get("ACCELERATE_MIXED_PRECISION")
    if asked and asked != "no" and asked != config["mixed_precision"]:
        raise EvalkitError(
            f"the accelerate config says mixed_precision {asked} but the preset says "
            f"{config['mixed_precision']}; pass --set mixed_precision={asked} or change the accelerate config"
        )


def apply(model, strategy: Strategy, world_size: int) -> list[torch.nn.Module]:
    """Shard `model` (a TrainableBagel) as `strategy` says; returns the sharded modules."""
    if strategy.kind != "fsdp":
        return []
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    modules = [m for m in model.model.modules() if type(m).__name__ in strategy.wrap]
    if not modules:
        raise EvalkitError(f"fsdp_transformer_layer_cls_to_wrap: no {', '.join(strategy.wrap)} in BAGEL")
    mesh = init_device_mesh(model.device.type, (world_size,))
    for module in modules:
        fully_shard(module, mesh=mesh, reshard_after_forward=strategy.reshard_after_forward)
    return modules


@contextmanager
def whole(modules: list[torch.nn.Module], strategy: Strategy) -> Iterator[None]:
    """Sharded layers gathered once for a rollout and kept whole (no per-forward collectives)."""
    if not modules:
        yield
        return
    for m in modules:
        m.set_reshard_after_forward(False)
        m.unshard()
    try:
        yield
    finally:
        for m in modules:
            m.reshard()
            m.set_reshard_after_forward(strategy.reshard_after_forward)


def describe(model, strategy: Strategy, modules: list[torch.nn.Module], world_size: int) -> dict[str, Any]:
    """What this rank holds (written to the run folder as parallel.json): evidence the sharding happened."""

    def fraction(params) -> float:
        params = list(params)
        total = sum(p.numel() for p in params)
        return sum(local(p).numel() for p in params) / total if total else 1.0

    named = list(model.peft.named_parameters())
    return {
        "strategy": strategy.kind,
        "processes": world_size,
        "sharded_modules": len(modules),
        "wrap": list(strategy.wrap) if strategy.kind == "fsdp" else [],
        "lora_fraction_on_rank0": fraction(p for n, p in named if "lora_" in n),
        "frozen_fraction_on_rank0": fraction(p for n, p in named if "lora_" not in n),
    }

"""GRPO trainer configuration. Defaults follow the Flow-GRPO SD3.5-Medium recipe (paper App. B.3, configs).

Every field carries `help` metadata so the CLI and docs can list them; `GRPOConfig.from_dict` accepts the
YAML files in reward_ablation/.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

SD35_LORA_TARGETS = (
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "attn.to_k",
    "attn.to_out.0",
    "attn.to_q",
    "attn.to_v",
)


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (list, dict, tuple)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class GRPOConfig:
    # model and run
    pretrained_model: str = _f(
        "stabilityai/stable-diffusion-3.5-medium", "diffusers SD3 pipeline id or folder."
    )
    output_dir: str = _f("runs/grpo", "Run folder: metrics.jsonl, checkpoints/, final LoRA.")
    seed: int = _f(42, "Seeds prompt sampling, initial noise, SDE noise, shuffling and windows (per epoch).")
    mixed_precision: str = _f(
        "fp16",
        "accelerate mixed precision: 'no', 'fp16' or 'bf16' (fp16 has the "
        "smaller rollout/train log-prob mismatch).",
    )
    allow_tf32: bool = _f(True, "Allow TF32 matmuls on Ampere+ GPUs.")
    resolution: int = _f(512, "Training image height and width.")
    max_sequence_length: int = _f(128, "T5 token budget for prompts.")
    negative_prompt: str = _f("", "Unconditional prompt for classifier-free guidance.")

    # sampling (rollouts)
    num_steps: int = _f(10, "Denoising steps of a training rollout.")
    eval_num_steps: int = _f(40, "ODE steps used for evaluation.")
    guidance_scale: float = _f(4.5, "CFG scale in rollouts (and recomputed in training when train_cfg).")
    eval_guidance_scale: float = _f(4.5, "CFG scale for evaluation.")
    noise_level: float = _f(
        0.7, "SDE noise level a (0.7 for 'sde', ~0.8 for 'cps'); 0 makes the ODE sampler."
    )
    sde_type: str = _f("sde", "'sde' (Flow-GRPO) or 'cps' (coefficients-preserving sampling).")
    sde_window_size: int = _f(
        0,
        "Flow-GRPO-Fast: number of consecutive SDE steps per rollout (rest is ODE) "
        "and the only steps trained; 0 = SDE on every step.",
    )
    sde_window_range: tuple[int, int] | None = _f(
        None,
        "Where the window may start/end as (lo, hi); None means (0, num_steps // 2), the high-noise half.",
    )
    group_size: int = _f(24, "Images per prompt (G); advantages are relative within a group.")
    sample_batch_size: int = _f(9, "Rollouts per device per forward pass.")
    num_batches_per_epoch: int = _f(4, "Rollout batches per device per epoch (48 groups at 32 GPUs).")
    same_latent: bool = _f(
        False, "Share the initial noise inside a group (differs from the paper's default)."
    )
    timestep_fraction: float = _f(
        0.99,
        "Fraction of the steps trained (0.99 of 10 drops the near-zero-noise "
        "last step); ignored with a window.",
    )

    # optimisation
    train_batch_size: int = _f(
        9,
        "Samples per training minibatch (keep equal to sample_batch_size so the "
        "importance ratio is exactly 1 on the first minibatch).",
    )
    gradient_accumulation_steps: int = _f(2, "Minibatches per optimiser step (each spans all trained steps).")
    num_inner_epochs: int = _f(1, "Passes over one epoch's rollouts.")
    num_epochs: int = _f(1000, "Epochs (rollout + training rounds) to run.")
    learning_rate: float = _f(3e-4, "AdamW learning rate for the LoRA weights.")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.999, "AdamW beta2.")
    adam_weight_decay: float = _f(1e-4, "AdamW weight decay.")
    adam_epsilon: float = _f(1e-8, "AdamW epsilon.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    clip_range: float = _f(1e-4, "PPO ratio clip epsilon (1e-5 for the window/CPS recipe).")
    adv_clip_max: float = _f(5.0, "Advantages are clipped to [-adv_clip_max, adv_clip_max].")
    beta: float = _f(
        0.04,
        "KL weight to the LoRA-disabled reference (0.04 GenEval/OCR, 0.01 PickScore, 0 for the Fast recipe).",
    )
    train_cfg: bool = _f(True, "Recompute CFG in training, as in the rollout.")
    global_std: bool = _f(True, "Divide advantages by the std of the whole batch instead of the group.")
    per_prompt_stat_tracking: bool = _f(
        True, "Group advantages by prompt (GRPO); False normalises the batch."
    )
    filter_zero_std: bool = _f(True, "Skip samples with all-zero advantage (groups with equal rewards).")
    gradient_checkpointing: bool = _f(False, "Trade compute for activation memory in the transformer.")

    # LoRA and EMA
    lora_rank: int = _f(32, "LoRA rank r.")
    lora_alpha: int = _f(64, "LoRA alpha.")
    lora_init: str = _f("gaussian", "peft init_lora_weights.")
    lora_target_modules: list[str] = _f(list(SD35_LORA_TARGETS), "The 8 SD3 attention projections.")
    ema: bool = _f(True, "Keep an EMA of the LoRA weights (used for eval and the saved LoRA).")
    ema_decay: float = _f(0.9, "EMA decay (warmed up as min((1+n)/(10+n), decay)).")
    ema_update_interval: int = _f(8, "Optimiser steps between EMA updates.")

    # rewards
    rewards: dict[str, float] = _f(
        {"pickscore": 1.0},
        "Reward name -> weight; total = weighted sum of raw scores; each is logged on its own.",
    )
    async_rewards: bool = _f(True, "Score a rollout batch in a thread while the next batch is sampled.")

    # bookkeeping
    save_freq: int = _f(60, "Save a checkpoint every N epochs (and at the end).")
    eval_freq: int = _f(60, "Evaluate every N epochs (0 = never).")
    resume_from: str | None = _f(None, "Checkpoint folder to resume from, or 'latest'.")

    def __post_init__(self) -> None:
        if self.mixed_precision is False:  # YAML 1.1 reads a bare `no` as False
            self.mixed_precision = "no"
        _coerce_scalars(self)
        if self.sde_type not in ("sde", "cps"):
            raise ValueError(f"sde_type must be 'sde' or 'cps', got {self.sde_type!r}")
        if self.sde_window_range is not None:
            self.sde_window_range = tuple(self.sde_window_range)
        if self.sde_window_size < 0 or self.sde_window_size >= self.num_steps:
            raise ValueError("sde_window_size must be in [0, num_steps)")
        per_step = self.train_batch_size * self.gradient_accumulation_steps
        if min(self.sample_batch_size, self.num_batches_per_epoch, per_step) < 1:
            raise ValueError(
                "sample_batch_size, num_batches_per_epoch, train_batch_size and "
                "gradient_accumulation_steps must be at least 1"
            )
        if (self.sample_batch_size * self.num_batches_per_epoch) % per_step:
            raise ValueError(
                f"sample_batch_size x num_batches_per_epoch = {self.sample_batch_size * self.num_batches_per_epoch} "
                f"rollouts per process must be a multiple of train_batch_size x gradient_accumulation_steps = "
                f"{per_step}, so every optimiser step sees the same number of minibatches ({_accumulation_hint(self)})"
            )

    @property
    def window_range(self) -> tuple[int, int]:
        return self.sde_window_range or (0, self.num_steps // 2)

    @property
    def num_train_timesteps(self) -> int:
        if self.sde_window_size > 0:
            return self.sde_window_size
        return max(1, int(self.num_steps * self.timestep_fraction))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GRPOConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GRPOConfig fields: {unknown}")
        return cls(**values)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}


def _coerce_scalars(config: GRPOConfig) -> None:
    """YAML 1.1 reads `3e-4` (no dot) as a string, and `--set` values arrive as YAML: convert numbers
    that came as text to the field's declared type, and refuse a value that is not one."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        kind, value = hints[f.name], getattr(config, f.name)
        if kind is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            converted: Any = _parse(float, f.name, value)
        elif kind is int and isinstance(value, str):
            converted = _parse(int, f.name, value)
        elif kind is float and isinstance(value, bool) or kind is int and isinstance(value, (bool, float)):
            raise ValueError(f"{f.name} must be a number, got {value!r}")
        else:
            continue
        setattr(config, f.name, converted)


def _parse(kind: type, name: str, value: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}") from None


def _accumulation_hint(config: GRPOConfig) -> str:
    rollouts = config.sample_batch_size * config.num_batches_per_epoch
    if rollouts % config.train_batch_size:
        return f"e.g. train_batch_size={config.sample_batch_size}"
    minibatches = rollouts // config.train_batch_size
    best = max(
        d
        for d in range(1, minibatches + 1)
        if minibatches % d == 0 and d <= config.gradient_accumulation_steps
    )
    return f"e.g. gradient_accumulation_steps={best}"

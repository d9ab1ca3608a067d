"""GRPO training from a config: what `evalkit train` calls, under `accelerate launch` (DDP / DeepSpeed) or not.

    accelerate launch --config_file reward_ablation/accelerate/ddp.yaml -m evalkit.grpo.launch \\
        --config my_run.yaml --prompts prompts.txt --reward pickscore=1.0

    evalkit train --model tiny-sd3 --prompts prompts.txt --reward brightness \\
        --set num_epochs=4 --set resolution=64 --set mixed_precision=no

`python -m evalkit.grpo.launch ARGS` is `evalkit train ARGS` (the module form `accelerate launch -m` needs).
`--config` is a YAML file of `GRPOConfig` fields; `--set key=value` overrides single fields (YAML-parsed).
Rewards are built by `evalkit.rewards.factory.build_reward` (see `evalkit ls rewards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.grpo.config import GRPOConfig


def load_pipeline(model: str):
    """`tiny-sd3` (offline test backbone) or a diffusers SD3 id/folder."""
    if model == "tiny-sd3":
        from evalkit.testing.sd3 import tiny_sd3_pipeline

        return tiny_sd3_pipeline()
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline.from_pretrained(model)


def parse_config(
    config_file: str | Path | None, overrides: Sequence[str], rewards: Sequence[str]
) -> GRPOConfig:
    """GRPOConfig from a YAML file, `key=value` overrides (YAML-parsed) and `name[=weight]` rewards; an
    unknown field or a value of the wrong type is one line naming it (with the closest field)."""
    import dataclasses

    import yaml

    from evalkit.errors import EvalkitError, did_you_mean

    if config_file and not Path(config_file).is_file():
        raise EvalkitError(f"no such config file: {config_file}")
    values: dict[str, Any] = yaml.safe_load(Path(config_file).read_text()) if config_file else {}
    for item in overrides:
        key, _, raw = item.partition("=")
        values[key.strip()] = yaml.safe_load(raw)
    if rewards:
        weights = {}
        for item in rewards:
            name, _, weight = item.partition("=")
            weights[name] = float(weight) if weight else 1.0
        values["rewards"] = weights
    known = [f.name for f in dataclasses.fields(GRPOConfig)]
    for key in values:
        if key not in known:
            raise did_you_mean("GRPOConfig field", key, known)
    try:
        return GRPOConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise EvalkitError(f"GRPOConfig: {error}") from None


def train(
    config: GRPOConfig,
    prompts: list[str],
    *,
    eval_prompts: list[str] | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """Train a LoRA with GRPO on `prompts` under `config` (rewards from `config.rewards`) and save it to
    `<output_dir>/final/lora`; returns the per-epoch history."""
    from evalkit.grpo import checkpoint
    from evalkit.grpo.distributed import build_accelerator
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.factory import build_reward

    accelerator = build_accelerator(config)
    if config.resume_from:  # a checkpoint this layout cannot take is refused before the model loads
        try:
            folder = checkpoint.resolve_resume(Path(config.output_dir), config.resume_from)
        except FileNotFoundError:
            folder = None  # 'latest' without a checkpoint yet: the trainer says so
        if folder is not None:
            checkpoint.check_resume(folder, accelerator)
    scorers = {name: build_reward(name) for name in config.rewards}
    pipeline = load_pipeline(model or config.pretrained_model)
    trainer = GRPOTrainer(
        config, pipeline, scorers, prompts, accelerator=accelerator, eval_prompts=eval_prompts
    )
    history = trainer.train()
    trainer.save_lora(Path(config.output_dir) / "final" / "lora")
    trainer.accelerator.end_training()
    return history


if (
    __name__ == "__main__"
):  # `python -m evalkit.grpo.launch ARGS` (e.g. under accelerate) is `evalkit train ARGS`
    import sys

    from evalkit.cli import main

    sys.argv[1:1] = ["train"]
    main()

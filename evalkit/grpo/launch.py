"""Command-line entry point of the GRPO trainer, for `accelerate launch` (DDP / DeepSpeed) or plain python.

    accelerate launch --config_file reward_ablation/accelerate/ddp.yaml -m evalkit.grpo.launch \\
        --config my_run.yaml --prompts prompts.txt --reward pickscore=1.0

    python -m evalkit.grpo.launch --model tiny-sd3 --prompts prompts.txt --reward brightness \\
        --set num_epochs=4 --set resolution=64 --set mixed_precision=no

`--config` is a YAML file of `GRPOConfig` fields; `--set key=value` overrides single fields (YAML-parsed).
Rewards are built by `evalkit.rewards.factory.build_reward` (see `evalkit ls rewards`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.grpo.config import GRPOConfig


def load_pipeline(model: str):
    """`tiny-sd3` (offline test backbone) or a diffusers SD3 id/folder."""
    if model == "tiny-sd3":
        from evalkit.generators.tiny_sd3 import tiny_sd3_pipeline

        return tiny_sd3_pipeline()
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline.from_pretrained(model)


def parse_config(config_file: str | None, overrides: Sequence[str], rewards: Sequence[str]) -> GRPOConfig:
    import yaml

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
    return GRPOConfig.from_dict(values)


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines skipped."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file of GRPOConfig fields")
    parser.add_argument("--set", action="append", default=[], help="override one field: key=value")
    parser.add_argument("--reward", action="append", default=[], help="name[=weight]; repeatable")
    parser.add_argument("--prompts", required=True, help="text file, one training prompt per line")
    parser.add_argument("--eval-prompts", help="text file of evaluation prompts")
    parser.add_argument("--model", help="diffusers SD3 id/folder or 'tiny-sd3' (default: config)")
    args = parser.parse_args(argv)

    config = parse_config(args.config, args.set, args.reward)
    prompts = read_prompts(args.prompts)
    eval_prompts = read_prompts(args.eval_prompts) if args.eval_prompts else None
    from evalkit.rewards.factory import build_reward

    scorers = {name: build_reward(name) for name in config.rewards}
    from evalkit.grpo.trainer import GRPOTrainer

    pipeline = load_pipeline(args.model or config.pretrained_model)
    trainer = GRPOTrainer(config, pipeline, scorers, prompts, eval_prompts=eval_prompts)
    history = trainer.train()
    trainer.save_lora(Path(config.output_dir) / "final" / "lora")
    trainer.accelerator.end_training()
    return history


if __name__ == "__main__":
    main()

"""What a run of the AlphaGRPO trainer is given besides the official config, and the checks made on it
before any model loads (settings this trainer cannot honour, process count, judges), the image reward
and the prompts file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.grpo.reward_mix import WeightedReward

UNSUPPORTED = {
    "train.recompute_log_prob": "recomputing old log-probs (AWM/NFT)",
    "train.ema": "EMA adapters",
    "train.isolate_image_text_reward": "isolated text rewards (AWM/NFT)",
}


@dataclass
class TrainerOptions:
    """What the official config does not say (evalkit side)."""

    run_dir: Path
    steps: int = 10  # optimizer steps (rounds)
    max_think_tokens: int = 1024  # official: at most 1024 think tokens
    text_loss_compat: str = "intended"  # "official" reproduces the B x B outer product
    # mix_t2i: the refinement must beat its T2I image's image reward ("intended"); "official" compares with
    # the T2I sample's total reward (image + think-format reward), which a well-formed think text puts out
    # of reach of any refinement, so nearly every SRR round is skipped
    mix_t2i_compat: str = "intended"
    save_every: int | None = None  # default: config save_freq
    judge: Any = None  # a Judge or judge spec for judge-based rewards (never defaulted)
    reward_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Official: rollout noise from the global RNG seeded 42 + rank. True: every sample draws its think
    # text and image noise from its own generator (seed, step, batch, global index) and the window is
    # shared, so a run gives the same numbers on any number of processes (checked by the gloo test).
    per_sample_seeds: bool = False


def validate(config: Mapping[str, Any], options: TrainerOptions, world_size: int) -> None:
    """Fail before any model loads on settings this trainer cannot honour."""
    sample, train = config["sample"], config["train"]
    if train["task"] not in ("t2i", "reflect"):
        raise EvalkitError(f"train.task must be t2i or reflect, got '{train['task']}'")
    if train["mix_t2i_task"] and train["task"] != "reflect":
        raise EvalkitError("train.mix_t2i_task mixes T2I rounds into SRR training: it needs train.task=reflect")
    for key in (
        "train.recompute_log_prob",
        "train.ema",
        "train.isolate_image_text_reward",
    ):
        section, name = key.split(".")
        if config[section][name]:
            raise EvalkitError(f"{key}=true ({UNSUPPORTED[key]}) is not implemented; use another preset")
    # the reflective judge's score reaches the training only in RT2I rewards or the negative-think mask
    # (isolated text rewards are refused above); in SRR it feeds the logged text_avg alone and is skipped
    if "reflective_think_format" in config["text_reward_fn"] and (
        train["task"] == "t2i" or train["mask_image_adv_w_negative_think_text"]
    ):
        raise EvalkitError(
            "text_reward_fn reflective_think_format (an LLM judge of the think text) is not wired into the "
            "trainer; pass --set 'text_reward_fn={think_tag_format: 1.0}'"
        )
    if train.get("image_algorithm") not in (None, "grpo"):
        raise EvalkitError(
            f"train.image_algorithm '{train['image_algorithm']}' is not implemented (only GRPO)"
        )
    if train["top_entropy_quantile"] < 1.0:
        raise EvalkitError("train.top_entropy_quantile < 1 is not implemented; set it to 1.0")
    if config["num_gpus"] != world_size:
        raise EvalkitError(
            f"num_gpus={config['num_gpus']} but {world_size} process(es) run; pass --set num_gpus={world_size}"
        )
    per_batch = config["num_gpus"] * sample["train_batch_size"]
    if per_batch % sample["num_image_per_prompt"]:
        raise EvalkitError(
            f"num_gpus * sample.train_batch_size = {per_batch} must be a multiple of "
            f"sample.num_image_per_prompt = {sample['num_image_per_prompt']}"
        )
    from evalkit.registry import lookup

    for name in config["reward_fn"]:
        entry = lookup("rewards", name)  # unknown name: one line with the closest known one
        has_spec = bool(options.reward_options.get(name, {}).get("judge"))
        if entry.needs_judge and options.judge is None and not has_spec:
            raise EvalkitError(
                f"reward {name} needs an explicit judge (--judge hf:MODEL, or openai:MODEL --judge-url URL)"
            )
    for name in ("text_loss_compat", "mix_t2i_compat"):
        if getattr(options, name) not in ("intended", "official"):
            raise EvalkitError(f"{name} must be 'intended' or 'official'")


def build_reward(config: Mapping[str, Any], options: TrainerOptions) -> WeightedReward:
    """The image reward: a weighted sum of registered evalkit rewards (`reward_fn`)."""
    from evalkit.rewards.factory import build_reward as build_one

    scorers = {
        name: build_one(name, dict(options.reward_options.get(name, {})), judge=options.judge)
        for name in config["reward_fn"]
    }
    return WeightedReward(scorers, config["reward_fn"])


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """AlphaGRPO-format JSONL (one object with "prompt" and its questions per line) or one prompt a line."""
    path = Path(path)
    if not path.exists():
        raise EvalkitError(f"no prompts file {path}")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if path.suffix == ".jsonl":
        out = []
        for number, line in enumerate(lines, start=1):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvalkitError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
                raise EvalkitError(f'{path}:{number}: a line needs a "prompt" string')
            out.append(data)
        return out
    return [{"prompt": line.strip()} for line in lines]

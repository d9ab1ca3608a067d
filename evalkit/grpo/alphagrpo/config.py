"""AlphaGRPO presets: the official values from presets.yaml, `--set key=value` overrides, derived values.

A resolved config is a nested dict with the official key names (`sample.num_steps`, `train.text_clip_range`,
...) plus `_derived` (what train.py computes from it). It is written to the run folder as `config.json`.
Overrides use dotted keys, values parsed as YAML (`--set sample.sde_window_range=[0,5]`); an unknown key
is an error that names the closest known one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError, did_you_mean

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
#: dict-valued keys that are values, not config sections (replaced whole by an override)
LEAF_DICTS = frozenset({"reward_fn", "text_reward_fn", "prompt_fn_kwargs"})
#: keys the official config code computes from others at construction: recomputed after overrides
#: unless they are overridden themselves
CONSTRUCTED = ("train.num_train_timesteps", "train.gradient_accumulation_steps")


@cache
def _presets_file() -> dict[str, Any]:
    return yaml.safe_load(PRESETS_FILE.read_text())


def preset_names() -> list[str]:
    return list(_presets_file()["presets"])


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and key not in LEAF_DICTS:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _assign(config: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    node = config
    for name in sections:
        node = node.setdefault(name, {})
    node[leaf] = value


def get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for name in dotted.split("."):
        node = node[name]
    return node


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`key=value` strings -> {key: YAML-parsed value}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise EvalkitError(f"--set expects key=value, got '{item}' (e.g. --set train.learning_rate=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def _coerce(key: str, old: Any, new: Any) -> Any:
    """Numbers given as text (YAML 1.1 reads `1e-4` as a string) become the preset's numeric type."""
    if isinstance(old, float) and isinstance(new, (int, str)) and not isinstance(new, bool):
        try:
            return float(new)
        except ValueError:
            raise EvalkitError(f"--set {key}: expected a number, got '{new}'") from None
    if isinstance(old, bool) and not isinstance(new, bool):
        raise EvalkitError(f"--set {key}: expected true or false, got '{new}'")
    if isinstance(old, int) and not isinstance(old, bool) and isinstance(new, str):
        try:
            return int(new)
        except ValueError:
            raise EvalkitError(f"--set {key}: expected an integer, got '{new}'") from None
    return new


def derived(config: Mapping[str, Any]) -> dict[str, Any]:
    """What train.py computes from the config (train.py:290-305, dataset sampler)."""
    sample, train = config["sample"], config["train"]
    num_train = max(int(sample["num_steps"] * train["timestep_fraction"]), 1)
    ga = train["gradient_accumulation_steps"]
    think = bool(sample["think"])
    acc = ga * num_train + ga if think else ga * num_train
    if train.get("mix_t2i_task"):
        acc *= 2
    return {
        "accelerate_gradient_accumulation_steps": acc,
        "num_train_timesteps": num_train,
        "text_backward_scale": max(1, num_train) * train["text_loss_weight"] if think else None,
        "trajectories_per_optimizer_step": config["total_batch_size"] * sample["num_image_per_prompt"],
        "unique_prompts_per_rollout_batch(m)": config["num_gpus"]
        * sample["train_batch_size"]
        // sample["num_image_per_prompt"],
    }


def resolve(preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The official preset with `overrides` (dotted keys) applied and `_derived` added."""
    data = _presets_file()
    if preset not in data["presets"]:
        raise did_you_mean("AlphaGRPO preset", preset, list(data["presets"]))
    config = copy.deepcopy(data["base"])
    for key, value in data["presets"][preset].items():
        _assign(config, key, copy.deepcopy(value))
    known = flatten(config)
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key not in known:
            raise did_you_mean("config key", key, list(known))
        _assign(config, key, _coerce(key, known[key], value))
    if "train.num_train_timesteps" not in overrides:
        config["train"]["num_train_timesteps"] = max(
            int(config["sample"]["num_steps"] * config["train"]["timestep_fraction"]), 1
        )
    if "train.gradient_accumulation_steps" not in overrides:
        per_step = config["total_batch_size"] * config["sample"]["num_image_per_prompt"]
        per_batch = config["num_gpus"] * config["sample"]["train_batch_size"]
        config["train"]["gradient_accumulation_steps"] = max(per_step // per_batch, 1)
    config["_derived"] = derived(config)
    return config


def write_resolved(config: Mapping[str, Any], folder: str | Path) -> Path:
    path = Path(folder) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path

"""AlphaGRPO on BAGEL as the reward ablation's trainer (`evalkit ablate-reward --backbone bagel|tiny-bagel`).

Every reward trains from the spec's official preset with `reward_fn` = that reward alone (the official code
runs its VIEScore baseline the same way: `alphagrpo_t2iThink_viescore` is `alphagrpo_t2iThink` with another
`reward_fn`). Every reward's config is resolved and checked before any model loads, so the fifth training
cannot fail on a setting after four have run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError, did_you_mean
from evalkit.grpo.ablation import AblationSpec, RewardRun
from evalkit.grpo.alphagrpo import config as presets
from evalkit.grpo.alphagrpo import parallel
from evalkit.grpo.alphagrpo.options import TrainerOptions, validate

FINAL_ADAPTER = Path("final") / "adapter"
#: TrainerOptions a spec's `trainer_options` may set (the rest is per run)
SPEC_OPTIONS = ("max_think_tokens", "text_loss_compat", "save_every", "per_sample_seeds")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def trainer_options(spec: AblationSpec, run: RewardRun, run_dir: Path, steps: int) -> TrainerOptions:
    """The evalkit-side options of one reward's run: the spec's `trainer_options`, the reward's scorer."""
    for key in spec.trainer_options:
        if key not in SPEC_OPTIONS:
            raise did_you_mean("trainer option", key, list(SPEC_OPTIONS))
    return TrainerOptions(
        run_dir=run_dir,
        steps=steps,
        reward_options={run.registry_name: dict(run.scorer)},
        **{k: spec.trainer_options[k] for k in SPEC_OPTIONS if k in spec.trainer_options},
    )


def reward_configs(
    spec: AblationSpec,
    chosen: Sequence[RewardRun],
    overrides: Mapping[str, Any],
    out_dir: Path,
    steps: int | None,
) -> dict[str, tuple[dict[str, Any], TrainerOptions]]:
    """Resolved preset and trainer options per reward, all checked now (nothing has loaded yet).

    Values: the preset, then the spec's `train`, the reward's `train`, then `overrides` (`--set`);
    `num_gpus: auto` is the number of processes launched."""
    if spec.preset is None:
        raise EvalkitError(f"the {spec.backbone} ablation spec names no AlphaGRPO `preset`")
    world = world_size()
    out: dict[str, tuple[dict[str, Any], TrainerOptions]] = {}
    for run in chosen:
        values = {**spec.train, **run.train, **overrides}
        if values.get("num_gpus") == "auto":
            values["num_gpus"] = world
        values["reward_fn"] = {run.registry_name: 1.0}
        config = presets.resolve(spec.preset, values)
        count = steps if steps is not None else int(config["num_epochs"])
        options = trainer_options(spec, run, out_dir / run.name, count)
        validate(config, options, world)
        parallel.check_mixed_precision(config)
        parallel.strategy_from_env()  # DeepSpeed and unknown strategies: refused now
        out[run.name] = (config, options)
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest `checkpoints/step_N` holding a trainer state (an interrupted run resumes from it)."""
    found = [
        (int(p.name.split("_")[-1]), p)
        for p in (run_dir / "checkpoints").glob("step_*")
        if p.name.split("_")[-1].isdigit() and (p / "trainer_state.pt").exists()
    ]
    return max(found)[1] if found else None


def make_trainer(
    configs: Mapping[str, tuple[dict[str, Any], TrainerOptions]],
    *,
    model: str,
    prompts: Sequence[Mapping[str, Any]],
    device: str | None = None,
) -> Callable[[RewardRun], Path]:
    """trainer(run) -> the run's adapter folder: trains (or resumes, or skips when its adapter exists)."""

    def train(run: RewardRun) -> Path:

        from evalkit.grpo.alphagrpo.comm import Comm
        from evalkit.grpo.alphagrpo.launch import _init_distributed, load_trainable
        from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer

        config, options = configs[run.name]
        final = Path(options.run_dir) / FINAL_ADAPTER
        if (final / "adapter_config.json").exists():
            return final
        strategy = parallel.strategy_from_env()  # DDP or FSDP, as `train_alphagrpo` runs it
        _init_distributed()
        trainable = load_trainable(model, config, device)
        trainer = AlphaGRPOTrainer(
            trainable,
            config,
            [dict(p) for p in prompts],
            dataclasses.replace(options),
            comm=Comm(),
            strategy=strategy,
        )
        resume = latest_checkpoint(Path(options.run_dir))
        if resume is not None:
            trainer.resume(resume)
        trainer.train()
        lora = {n: parallel.full(v).clone() for n, v in trainable.lora_state().items()}  # every rank (FSDP)
        if trainer.comm.rank == 0:
            trainable.save_adapter(final, state=lora)
        trainer.comm.barrier()
        return final

    return train

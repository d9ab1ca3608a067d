"""Library entry point for AlphaGRPO training (`evalkit train alphagrpo` calls `train_alphagrpo`).

Everything a user can get wrong (preset, `--set` keys, prompts file, judge, process count, the accelerate
config's strategy and precision) is checked before any model loads. Under `torchrun` / `accelerate launch`
(WORLD_SIZE > 1) a process group is initialised (NCCL with CUDA, else gloo) and each process trains its
share; `accelerate/fsdp.yaml` shards the decoder layers (`parallel.py`).

    accelerate launch --config_file evalkit/grpo/alphagrpo/accelerate/ddp.yaml \\
        -m evalkit.grpo.alphagrpo.launch --preset alphagrpo_reflect --prompts train.jsonl --set num_gpus=8 ...

`python -m evalkit.grpo.alphagrpo.launch ARGS` is `evalkit train alphagrpo ARGS`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from evalkit.errors import EvalkitError
from evalkit.grpo.alphagrpo import config as presets
from evalkit.grpo.alphagrpo import parallel
from evalkit.grpo.alphagrpo.comm import Comm
from evalkit.grpo.alphagrpo.options import TrainerOptions, read_prompts, validate
from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer

TINY = "tiny-bagel"


def _init_distributed() -> bool:
    """True when this call created the process group (and so must destroy it)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def load_trainable(model: str, config: dict[str, Any], device: str | None = None):
    """`tiny-bagel` (random tiny BAGEL, offline) or an official-layout BAGEL folder, with LoRA.

    The LoRA's random init is drawn from the config's seed, so every rank starts from the same adapter
    (what DDP's broadcast of rank 0's weights gives the official code) and 1 and N processes agree."""
    from evalkit.bagel.train import TrainableBagel

    torch.manual_seed(int(config["seed"]))
    cuda = torch.cuda.is_available()
    device = device or ("cuda" if cuda else "cpu")
    autocast = torch.bfloat16 if config["mixed_precision"] == "bf16" and device.startswith("cuda") else None
    checkpointing = bool(config["train"]["use_gradient_checkpointing"])
    if model == TINY:
        from evalkit.testing.bagel import random_pipeline, tiny_config

        pipe = random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1), device=device)
        rank, alpha = 4, 8  # the tiny model's hidden size is 32: r 32 would exceed it
    else:
        from evalkit import bagel

        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise EvalkitError(f"no BAGEL folder {folder}; pass --model PATH (official layout) or tiny-bagel")
        pipe = bagel.load(folder, dtype=torch.float32, device=device)
        rank, alpha = config["lora_rank"], config["lora_alpha"]
    return TrainableBagel(
        pipe, lora_rank=rank, lora_alpha=alpha, gradient_checkpointing=checkpointing, autocast_dtype=autocast
    )


def train_alphagrpo(
    preset: str,
    prompts: str | Path,
    *,
    overrides: Sequence[str] = (),
    model: str = TINY,
    judge: str | None = None,
    judge_url: str | None = None,
    out_dir: str | Path = "runs/alphagrpo",
    steps: int | None = None,
    max_think_tokens: int = 1024,
    text_loss_compat: str = "intended",
    resume: str | Path | None = None,
    device: str | None = None,
    per_sample_seeds: bool = False,
    mix_t2i_compat: str = "intended",
) -> tuple[Path, list[dict[str, Any]]]:
    """Train and return (final adapter folder, per-step metrics). Resumes from a checkpoint folder."""
    config = presets.resolve(preset, presets.parse_overrides(overrides))
    records = read_prompts(prompts)
    if not records:
        raise EvalkitError(f"no prompts in {prompts}")
    options = TrainerOptions(
        run_dir=Path(out_dir),
        steps=steps if steps is not None else config["num_epochs"],
        max_think_tokens=max_think_tokens,
        text_loss_compat=text_loss_compat,
        judge=judge,
        per_sample_seeds=per_sample_seeds,
        mix_t2i_compat=mix_t2i_compat,
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    validate(config, options, world)
    strategy = parallel.strategy_from_env()
    parallel.check_mixed_precision(config)
    if resume is not None and not (Path(resume) / "trainer_state.pt").exists():
        raise EvalkitError(f"no checkpoint in {resume} (expected trainer_state.pt)")
    if judge is not None:
        from evalkit.dvreward.verify import VERIFIER_SYSTEM_PROMPT
        from evalkit.judges import load_judge

        options.judge = load_judge(judge, url=judge_url, system_prompt=VERIFIER_SYSTEM_PROMPT)
    created = _init_distributed()
    trainable = load_trainable(model, config, device)
    trainer = AlphaGRPOTrainer(trainable, config, records, options, comm=Comm(), strategy=strategy)
    if resume is not None:
        trainer.resume(resume)
    history = trainer.train()
    final = Path(out_dir) / "final" / "adapter"
    lora = {n: parallel.full(v).clone() for n, v in trainable.lora_state().items()}  # every rank (FSDP)
    if trainer.comm.rank == 0:
        trainable.save_adapter(final, state=lora)
    trainer.comm.barrier()
    if created:  # an undestroyed gloo group can abort the interpreter at exit
        import torch.distributed as dist

        dist.destroy_process_group()
    return final, history


if __name__ == "__main__":  # `accelerate launch -m evalkit.grpo.alphagrpo.launch ARGS`
    import sys

    from evalkit.cli import main

    sys.argv[1:1] = ["train", "alphagrpo"]
    main()

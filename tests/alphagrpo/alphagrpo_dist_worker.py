"""Worker for the gloo test: a few AlphaGRPO t2i steps on a tiny BAGEL, per-sample seeds.

Run with `python -m torch.distributed.run --nproc_per_node N alphagrpo_dist_worker.py OUT.json` (or
directly for one process); rank 0 writes the per-step records and the final LoRA weights' checksums.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

STEPS = 3
GROUP = 4


def run(out: str) -> None:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    from evalkit.bagel.train import TrainableBagel
    from evalkit.grpo.alphagrpo import config as presets
    from evalkit.grpo.alphagrpo.comm import Comm
    from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer, TrainerOptions
    from evalkit.testing.bagel import random_pipeline, tiny_config, use_transparent_decoder

    overrides = {
        "num_gpus": world,
        "sample.train_batch_size": GROUP // world,
        "sample.num_image_per_prompt": GROUP,
        "total_batch_size": 1,
        "train.gradient_accumulation_steps": 1,
        "resolution": 32,
        "sample.num_steps": 6,
        "train.timestep_fraction": 0.5,
        "sample.sde_window_range": [0, 4],
        "train.learning_rate": 1e-2,
        "reward_fn": {"brightness": 1.0},
    }
    config = presets.resolve("alphagrpo_t2iThink", overrides)
    torch.manual_seed(0)
    pipe = use_transparent_decoder(random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1)))
    model = TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=False)
    comm = Comm()
    with tempfile.TemporaryDirectory() as tmp:
        options = TrainerOptions(
            run_dir=Path(tmp) / str(comm.rank), steps=STEPS, max_think_tokens=4, per_sample_seeds=True
        )
        prompts = [{"prompt": "a red cube"}, {"prompt": "a cat"}]
        trainer = AlphaGRPOTrainer(model, config, prompts, options, comm=comm)
        history = [trainer.train_step() for _ in range(STEPS)]
    if comm.rank == 0:
        lora = {n: float(p.double().sum()) for n, p in model.lora_state().items()}
        keep = ("reward_mean", "reward_avg_mean", "advantages", "loss", "grad_norm", "samples")
        records = [{k: r[k] for k in keep} for r in history]
        Path(out).write_text(json.dumps({"records": records, "lora": lora}))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    run(sys.argv[1])

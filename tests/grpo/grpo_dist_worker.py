"""Worker for the distributed Flow-GRPO tests: a few epochs on the tiny SD3, counting real optimiser steps.

Run under `accelerate launch` or `torch.distributed.run` (or directly for one process) with
`grpo_dist_worker.py OUT.json SAMPLE_BATCH NUM_BATCHES GRAD_ACC EPOCHS`; rank 0 writes the per-epoch records,
the optimiser steps taken (a post-hook on the AdamW that every backend ends up stepping) and the LoRA sums.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a blue bird"]
KEEP = ("reward_mean", "policy_loss", "kl", "approx_kl", "ratio", "trained_samples", "global_step")


def run(out: str, sample_batch: int, num_batches: int, grad_acc: int, epochs: int) -> None:
    torch.set_num_threads(1)
    from evalkit.grpo.config import GRPOConfig
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.brightness import BrightnessScorer
    from evalkit.testing.sd3 import tiny_sd3_pipeline

    steps = []
    original = torch.optim.AdamW.__init__

    def counted(self, *args, **kwargs):  # the hook sits on the user's AdamW, whichever wrapper steps it
        original(self, *args, **kwargs)
        self.register_step_post_hook(lambda *_: steps.append(1))

    torch.optim.AdamW.__init__ = counted
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, mixed_precision="no", resolution=64, num_steps=4, timestep_fraction=0.5,
            group_size=4, sample_batch_size=sample_batch, train_batch_size=sample_batch,
            num_batches_per_epoch=num_batches, gradient_accumulation_steps=grad_acc, learning_rate=3e-3,
            beta=0.01, rewards={"brightness": 1.0}, lora_rank=4, lora_alpha=128, lora_target_modules=TARGETS,
            max_sequence_length=16, save_freq=0, ema=False, async_rewards=False, filter_zero_std=False, seed=0,
        )  # fmt: skip
        trainer = GRPOTrainer(config, tiny_sd3_pipeline(), {"brightness": BrightnessScorer()}, PROMPTS)
        history = trainer.train(num_epochs=epochs)
        lora = trainer.lora_state_dict(use_ema=False)  # every process: FSDP gathers the shards
        acc = trainer.accelerator
        if acc.is_main_process:
            result = {
                "records": [{k: r.get(k) for k in KEEP} for r in history],
                "optimizer_steps": len(steps),
                "global_step": trainer.global_step,
                "accumulation_steps": acc.gradient_accumulation_steps,
                "backend": str(acc.distributed_type).split(".")[-1],
                "num_processes": acc.num_processes,
                "lora": {n: float(t.double().sum()) for n, t in lora.items()},
            }
            Path(out).write_text(json.dumps(result))
        acc.end_training()


if __name__ == "__main__":
    run(sys.argv[1], *(int(a) for a in sys.argv[2:6]))

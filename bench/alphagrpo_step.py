"""Seconds and peak memory per AlphaGRPO training step on BAGEL shapes, with the share of each phase.

One step = one round of the trainer: rollout (think sampling + SDE image path, or SRR stage 1 + stage 2),
reward (brightness, instant, so the share is the post-processing), and the replay (text and window-step
backwards, optimizer step). Each configuration runs in a fresh subprocess so peak memory is its own: CUDA
peak allocated on GPU (model included), peak RSS growth over the loaded model on CPU (what the steps add).
Random weights: only costs mean anything.

    python bench/alphagrpo_step.py                          # tiny and small shapes, both tasks, this machine
    python bench/alphagrpo_step.py --shapes 7b --device cuda  # BAGEL-7B-MoT shapes (needs ~40 GB GPU memory)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from suite_results import emit

# name: (LLMConfig overrides or None for the full 7B-MoT, resolution, LoRA rank/alpha, group size, steps)
SHAPES = {
    "tiny": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1), 32, (4, 8), 4, 6),
    "small": (dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2), 64, (16, 32), 4, 10),
    "7b": (None, 512, (32, 64), 2, 16),
}  # fmt: skip


def build(shape: str, device: str):
    import torch

    from evalkit.bagel.train import TrainableBagel
    from evalkit.testing.bagel import random_pipeline, tiny_config

    llm, resolution, (rank, alpha), _, _ = SHAPES[shape]
    if llm is None:
        from evalkit.bagel.autoencoder import AutoEncoder
        from evalkit.bagel.config import BagelConfig
        from evalkit.bagel.model import Bagel
        from evalkit.bagel.pipeline import BagelPipeline
        from evalkit.testing.bagel import byte_tokenizer

        cfg = BagelConfig()
        torch.set_default_dtype(torch.bfloat16)
        with torch.device(device):
            model, vae = Bagel(cfg), AutoEncoder(cfg.vae)
        torch.set_default_dtype(torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.normal_(0, 0.02)
        pipe = BagelPipeline(model, vae.float(), byte_tokenizer())
        autocast = torch.bfloat16
    else:
        cfg = tiny_config()
        for key, value in llm.items():
            setattr(cfg.llm, key, value)
        pipe = random_pipeline(cfg, device=device)
        autocast = torch.bfloat16 if device.startswith("cuda") else None
    trainable = TrainableBagel(pipe, lora_rank=rank, lora_alpha=alpha, autocast_dtype=autocast)
    return trainable, resolution


def worker(shape: str, task: str, steps: int, device: str) -> dict:
    import torch

    from evalkit.grpo.alphagrpo import config as presets
    from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer, TrainerOptions

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    trainable, resolution = build(shape, device)
    _, _, _, group, num_steps = SHAPES[shape]
    preset = "alphagrpo_t2iThink" if task == "t2i" else "alphagrpo_reflect"
    # the preset's window fraction and range, scaled to `num_steps`; one batch of `group` per step
    overrides = {
        "num_gpus": 1,
        "sample.train_batch_size": group,
        "sample.num_image_per_prompt": group,
        "total_batch_size": 1,
        "resolution": resolution,
        "sample.num_steps": num_steps,
        "sample.eval_num_steps": num_steps,
        "sample.sde_window_range": None,
        "reward_fn": {"brightness": 1.0},
    }
    config = presets.resolve(preset, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        options = TrainerOptions(run_dir=Path(tmp), steps=steps + 1, max_think_tokens=32, save_every=10**9)
        trainer = AlphaGRPOTrainer(trainable, config, [{"prompt": "a red cube on a blue table"}], options)
        # CPU: the high-water mark only rises, so the baseline is taken before the first step (model
        # loaded, nothing run); the peak is what the steps add on top of the model
        baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        trainer.train_step()  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        records = []
        for _ in range(steps):
            start = time.perf_counter()
            record = trainer.train_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            record["wall"] = time.perf_counter() - start
            records.append(record)
        if device.startswith("cuda"):
            peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mb
    total = sum(r["wall"] for r in records)
    share = {k: sum(r["time"][k] for r in records) / total for k in ("rollout", "reward", "backward")}
    return {
        "shape": shape,
        "task": task,
        "s_per_step": statistics.median(r["wall"] for r in records),
        "peak_mb": peak_mb,
        "share": share,
        "trained_steps": config["_derived"]["num_train_timesteps"],
        "group": group,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,small")
    parser.add_argument("--tasks", default="t2i,reflect")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="append the measurements to this JSONL file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.steps, args.device)))
        return
    rows = []
    for shape in args.shapes.split(","):
        for task in args.tasks.split(","):
            cmd = [sys.executable, __file__, "--worker", shape, task, "--steps", str(args.steps)]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            out = subprocess.run(
                [*cmd, "--device", args.device], check=True, capture_output=True, text=True, env=env
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"device {args.device}; median of {args.steps} steps after one warm-up; brightness reward")
    print("| shape | task | group | trained steps | s/step | peak MB | rollout | reward | backward |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["share"]
        print(
            f"| {r['shape']} | {r['task']} | {r['group']} | {r['trained_steps']} | {r['s_per_step']:.2f} | "
            f"{r['peak_mb']:.0f} | {s['rollout']:.0%} | {s['reward']:.0%} | {s['backward']:.0%} |"
        )
    for r in rows:
        emit(
            args.json,
            bench="alphagrpo_step",
            config=f"{r['shape']} {r['task']} group {r['group']}",
            device=args.device,
            ratio=r["share"]["rollout"],
            ratio_of="rollout share of the step",
            images_per_s=r["group"] / r["s_per_step"],
            seconds=r["s_per_step"],
            peak_mem_gb=r["peak_mb"] / 1024,
        )
    base = {r["task"]: r["s_per_step"] for r in rows if r["shape"] == rows[0]["shape"]}
    for r in rows[len(base) :]:
        print(f"{r['shape']}/{r['task']} is {r['s_per_step'] / base[r['task']]:.1f}x {rows[0]['shape']}")


if __name__ == "__main__":
    main()

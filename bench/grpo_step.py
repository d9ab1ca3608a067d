"""Seconds and peak memory per GRPO training step: full-trajectory Flow-GRPO vs the SDE window (Fast).

One "step" = one epoch of the trainer with a single rollout batch and one optimiser update: sample the batch
(all denoising steps), score it, then train on the stored steps (9 of 10 by default, `--window` of them in the
Fast path). Both paths use the same SDE, KL weight and batch, so the ratio isolates the window. Each
measurement runs in a fresh subprocess so peak memory is per configuration: CUDA peak allocated on GPU, peak
RSS growth over the loaded models (ru_maxrss after setup) on CPU. Random weights: only costs mean
anything.

    python bench/grpo_step.py                      # tiny and small SD3 configs on this machine
    python bench/grpo_step.py --configs small --steps 3 --window 2
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

SMALL_TRANSFORMER = {
    "sample_size": 16,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 4,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 32,
    "caption_projection_dim": 128,
    "pooled_projection_dim": 64,
    "pos_embed_max_size": 32,
}
# SD3.5-Medium's MMDiT-X (transformer/config.json of stabilityai/stable-diffusion-3.5-medium).
SD35M_TRANSFORMER = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "dual_attention_layers": list(range(13)),
    "qk_norm": "rms_norm",
}
CONFIGS = {
    # name: (resolution, transformer config override or None for the tiny one, LoRA rank)
    "tiny": (64, None, 4),
    "small": (128, SMALL_TRANSFORMER, 16),
    "sd35m": (512, SD35M_TRANSFORMER, 32),  # the Flow-GRPO SD3.5-M recipe: 512 px, LoRA r32
}
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def build_pipeline(name: str, device: str):
    import torch
    from diffusers import SD3Transformer2DModel

    from evalkit.testing.sd3 import tiny_sd3_pipeline

    pipe = tiny_sd3_pipeline()
    override = CONFIGS[name][1]
    if override is not None:
        torch.manual_seed(0)
        pipe.transformer = SD3Transformer2DModel(**override)
    if name == "sd35m":
        _widen_to_sd35m(pipe)
    return pipe.to(device)


def _widen_to_sd35m(pipe) -> None:
    """Text encoders with SD3.5's output widths (CLIP-L 768, CLIP-G 1280, T5-XXL 4096) but one layer
    each (prompts are encoded outside the timed training step), and SD3's VAE shapes (decoded every
    rollout for the reward)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    def clip(width: int, heads: int):
        base = pipe.text_encoder.config
        config = CLIPTextConfig(
            vocab_size=base.vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_act="gelu",
            hidden_size=width, intermediate_size=4 * width, num_attention_heads=heads, num_hidden_layers=2,
            projection_dim=width, max_position_embeddings=77,
        )  # fmt: skip
        return CLIPTextModelWithProjection(config)

    pipe.text_encoder, pipe.text_encoder_2 = clip(768, 12), clip(1280, 20)
    t5 = pipe.text_encoder_3.config
    pipe.text_encoder_3 = T5EncoderModel(
        T5Config(vocab_size=t5.vocab_size, d_model=4096, d_kv=64, d_ff=10240, num_layers=1, num_heads=64)
    )
    pipe.vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], latent_channels=16,
        layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
        scaling_factor=1.5035,
    )  # fmt: skip


def worker(name: str, window: int, steps: int, batch: int, num_steps: int, beta: float, device: str) -> dict:
    import torch

    import evalkit  # noqa: F401  (installs the torchvision shim before diffusers imports)
    from evalkit.grpo.config import GRPOConfig
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.brightness import BrightnessScorer

    resolution, _, rank = CONFIGS[name]
    pipe = build_pipeline(name, device)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out,
            mixed_precision="no" if device == "cpu" else "bf16",
            resolution=resolution,
            num_steps=num_steps,
            sde_window_size=window,
            group_size=batch // 2,
            sample_batch_size=batch,
            train_batch_size=batch,
            num_batches_per_epoch=1,
            gradient_accumulation_steps=1,
            beta=beta,
            rewards={"brightness": 1.0},
            lora_rank=rank,
            lora_alpha=2 * rank,
            lora_target_modules=TARGETS,
            max_sequence_length=16,
            save_freq=0,
            async_rewards=False,
        )
        trainer = GRPOTrainer(
            config, pipe, {"brightness": BrightnessScorer()}, ["a photo of a cat", "a red car"]
        )
        baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # models loaded
        trainer.train_epoch()  # warm-up (allocations, kernels)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        records = [trainer.train_epoch() for _ in range(steps)]
        if device == "cuda":
            torch.cuda.synchronize()
            peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mb
    return {
        "config": name,
        "path": f"window{window}" if window else "default",
        "trained_steps": config.num_train_timesteps,
        "seconds": statistics.median(r["epoch_seconds"] for r in records),
        "rollout_seconds": statistics.median(r["rollout_seconds"] for r in records),
        "peak_mb": peak_mb,
        "memory": "CUDA peak allocated" if device == "cuda" else "peak RSS growth over the loaded models",
    }


def run_one(args, name: str, window: int) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", name, "--window", str(window), "--steps", str(args.steps),
        "--batch", str(args.batch), "--num-steps", str(args.num_steps), "--beta", str(args.beta),
        "--device", args.device,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--window", type=int, default=2, help="SDE window size of the Fast path")
    parser.add_argument("--steps", type=int, default=3, help="measured steps (after one warm-up)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--num-steps", type=int, default=10, help="denoising steps per rollout")
    parser.add_argument("--beta", type=float, default=0.04, help="KL weight (same for both paths)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="append the measurements to this JSONL file")
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(
            json.dumps(
                worker(
                    args.worker, args.window, args.steps, args.batch, args.num_steps, args.beta, args.device
                )
            )
        )
        return

    print(
        f"device={args.device} batch={args.batch} denoising_steps={args.num_steps} "
        f"measured_steps={args.steps}"
    )
    header = f"{'config':<7} {'path':<9} {'trained':>7} {'s/step':>8} {'rollout s':>9} {'peak MB':>9}"
    print(header)
    for name in args.configs.split(","):
        start = time.perf_counter()
        default, fast = run_one(args, name, 0), run_one(args, name, args.window)
        for r in (default, fast):
            print(
                f"{r['config']:<7} {r['path']:<9} {r['trained_steps']:>7} {r['seconds']:>8.3f} "
                f"{r['rollout_seconds']:>9.3f} {r['peak_mb']:>9.1f}"
            )
        print(
            f"{name}: default/window time ratio = {default['seconds'] / fast['seconds']:.2f}x, "
            f"peak memory ratio = {default['peak_mb'] / fast['peak_mb']:.2f}x "
            f"({default['memory']}; {time.perf_counter() - start:.0f} s)"
        )
        for r in (default, fast):
            emit(
                args.json,
                bench="flow_grpo_step",
                config=f"{name} {r['path']} batch {args.batch}",
                device=args.device,
                ratio=default["seconds"] / r["seconds"],
                ratio_of="default s/step / this s/step",
                images_per_s=args.batch / r["seconds"],
                seconds=r["seconds"],
                peak_mem_gb=r["peak_mb"] / 1024,
            )


if __name__ == "__main__":
    main()

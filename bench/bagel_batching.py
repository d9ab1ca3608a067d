"""Images per second of evalkit's BAGEL runtime at batch 1 vs batch N (random weights).

    python bench/bagel_batching.py                       # small random config on CPU
    python bench/bagel_batching.py --shapes tiny         # the parity fixture's shapes (overhead-bound)
    python bench/bagel_batching.py --shapes 7b --device cuda --dtype bf16 --size 512 --steps 10

`--shapes 7b` builds BAGEL-7B-MoT's real shapes (Qwen2.5-7B MoT, SigLIP-so400m, FLUX VAE) with random
weights; it needs a GPU with ~40 GB. Text-to-image with the official T2I CFG settings (two LLM passes
per step); the images are meaningless, only the timing matters.
"""

from __future__ import annotations

import argparse
import time

import torch
from suite_results import emit, peak_cuda_gb

from evalkit.bagel.config import BagelConfig, LLMConfig, VAEConfig, ViTConfig
from evalkit.testing.bagel import random_pipeline, tiny_config


def seven_b_config() -> BagelConfig:
    llm = LLMConfig(vocab_size=152064)
    vit = ViTConfig()
    return BagelConfig(llm=llm, vit=vit, vae=VAEConfig())


def small_config() -> BagelConfig:
    """Small but not trivial: 4 layers, hidden 256, so that matmuls dominate Python overhead."""
    return tiny_config(hidden=256, layers=4, heads=8, kv_heads=2, vocab=512)


def _build(shapes: str, device: str, dtype: torch.dtype):
    if shapes == "7b":  # build directly on the device in the target dtype (14B parameters)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                return random_pipeline(seven_b_config(), seed=0, dtype=dtype, device=device)
        finally:
            torch.set_default_dtype(previous)
    cfg = tiny_config() if shapes == "tiny" else small_config()
    return random_pipeline(cfg, seed=0, dtype=dtype, device=device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def images_per_second(pipe, batch: int, total: int, args, device: str) -> float:
    """Best of `args.trials` timings of `total` images made `batch` at a time (the CPU is shared, so the
    best trial is the least disturbed one, as in `timeit`)."""
    prompts = [f"a photo of {i} red cubes on a wooden table" for i in range(total)]
    settings = dict(
        height=args.size,
        width=args.size,
        num_timesteps=args.steps,
        timestep_shift=3.0,
        cfg_text_scale=4.0,
        cfg_img_scale=1.0,
        cfg_interval=(0.0, 1.0),
        cfg_renorm_type="global",
        cfg_renorm_min=0.0,
    )
    pipe.generate_images(prompts[:batch], seeds=list(range(batch)), **settings)  # warm-up
    best = float("inf")
    for _ in range(args.trials):
        _sync(device)
        start = time.perf_counter()
        for i in range(0, total, batch):
            pipe.generate_images(prompts[i : i + batch], seeds=list(range(i, i + batch)), **settings)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return total / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", choices=["tiny", "small", "7b"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=10, help="num_timesteps (steps - 1 Euler steps)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", default=None, help="append the measurements to this JSONL file")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    pipe = _build(args.shapes, args.device, dtype)
    n = args.batch
    with torch.inference_mode():
        one, many = (
            images_per_second(pipe, 1, n, args, args.device),
            images_per_second(pipe, n, n, args, args.device),
        )
        # the same without the VAE decoder: what batching does to the LLM sampler itself
        pipe._decode = lambda latents, grid: [torch.zeros(3, 16, 16) for _ in latents]
        one_llm = images_per_second(pipe, 1, n, args, args.device)
        many_llm = images_per_second(pipe, n, n, args, args.device)
    print(f"shapes={args.shapes} device={args.device} dtype={args.dtype} size={args.size} steps={args.steps}")
    print(f"end to end   batch 1: {one:.3f} img/s   batch {n}: {many:.3f} img/s   ratio {many / one:.2f}x")
    print(
        f"LLM sampler  batch 1: {one_llm:.3f} img/s   batch {n}: {many_llm:.3f} img/s   "
        f"ratio {many_llm / one_llm:.2f}x  (VAE decode skipped)"
    )
    config = f"{args.shapes} {args.dtype} {args.size}px {args.steps} steps"
    common = dict(bench="bagel_generation", device=args.device, ratio_of=f"batch {n} / batch 1")
    peak = peak_cuda_gb(args.device)
    emit(args.json, config=config, ratio=many / one, images_per_s=many, peak_mem_gb=peak, **common)
    emit(args.json, config=config + " LLM only", ratio=many_llm / one_llm, images_per_s=many_llm, **common)


if __name__ == "__main__":
    main()

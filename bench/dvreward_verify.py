"""Seconds per image for DVReward verification: prefix KV-cache reuse vs one full request per question.

    python bench/dvreward_verify.py                          # tiny and small judges, Q = 4, 16, 32, CPU
    python bench/dvreward_verify.py --configs small --questions 8 64 --repeats 5 --device cuda

Both paths run on the same local judge (random weights, Qwen2-VL architecture): `prefix` computes the image
+ instruction prefix once and batches the questions on its KV cache (`HFJudge.p_yes_with_prefix_cache`, what
DVReward uses); `full` sends each question as its own full forward over image and prompt
(`HFJudge.p_yes_full_forward`, what a server without prefix caching does). The ideal ratio counts LLM
tokens only: Q x (P + S) for full requests vs P + Q x S with reuse (P prefix tokens including the image,
S suffix tokens per question); the vision encoder, which `full` also repeats Q times, is not counted.

    python bench/dvreward_verify.py --configs --http-images 16 --questions 16    # HTTP concurrent-images mode

`--http-images N` also times DVReward over N images through the HTTP judge against the project's local
OpenAI-compatible server (`evalkit.judges.server`, a scripted model, `--http-latency` seconds per request
spent concurrently, standing in for a vLLM/SGLang server): every question of every image one request at a
time (`concurrency=1`), one image at a time with its questions concurrent (`workers=1`), and the default,
all images' questions in flight together (`workers=None`). Rewards must be identical in all three.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from suite_results import emit, peak_cuda_gb

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.dvreward.verify import VERIFIER_SYSTEM_PROMPT
from evalkit.judges.hf import HFJudge
from evalkit.testing.judges import TINY_QWEN2VL_CONFIG, build_model, build_processor, build_tokenizer

# Qwen2-VL-shaped but small: 8 decoder layers of width 512 (head dim 64, M-RoPE sections 16/8/8), a
# 4-block vision tower, 224x224 images -> 256 patches -> 64 image tokens after 2x2 merging.
SMALL_QWEN2VL_CONFIG = {
    **TINY_QWEN2VL_CONFIG,
    "text": {
        "hidden_size": 512,
        "intermediate_size": 1376,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [16, 8, 8]},
    },
    "vision": {
        "depth": 4,
        "embed_dim": 128,
        "hidden_size": 512,
        "num_heads": 4,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "image": {"min_pixels": 224 * 224, "max_pixels": 224 * 224},
}
# Qwen2.5-VL-7B's LLM shapes (Qwen2-7B) and a 32-block 1280-wide vision tower, on the Qwen2-VL
# architecture that the tiny builders make (Qwen2.5-VL's windowed vision attention is not modelled; the
# vocabulary stays the tiny tokenizer's, which only changes the cost of the last-token logits).
QWEN7B_CONFIG = {
    **TINY_QWEN2VL_CONFIG,
    "text": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 3584,
        "num_heads": 16,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "image": {"min_pixels": 448 * 448, "max_pixels": 448 * 448},
}
CONFIGS = {"tiny": TINY_QWEN2VL_CONFIG, "small": SMALL_QWEN2VL_CONFIG, "7b": QWEN7B_CONFIG}
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink")
OBJECTS = ("cat", "dog", "car", "bus", "clock", "cup", "chair", "table")
RELATIONS = ("on the left of", "above", "next to", "behind")


def build_judge(name: str, device: str, dtype: torch.dtype, system_prompt: str | None) -> HFJudge:
    config = CONFIGS[name]
    tokenizer = build_tokenizer(config["vocab_size"])
    model = build_model(tokenizer, config).to(device, dtype)
    processor = build_processor(tokenizer, config)
    return HFJudge(model, processor, name=f"{name}-qwen2vl", batch_size=32, system_prompt=system_prompt)


def questions(count: int) -> list[str]:
    """Distinct DVReward-like questions of realistic length."""
    found = []
    for i in range(count):
        color, obj = COLORS[i % len(COLORS)], OBJECTS[(i // len(COLORS)) % len(OBJECTS)]
        other, relation = OBJECTS[(i + 3) % len(OBJECTS)], RELATIONS[i % len(RELATIONS)]
        found.append(f"Is the {color} {obj} {relation} the {other} in the image?")
    return found


def token_counts(judge: HFJudge, image: Image.Image, asked: list[str]) -> tuple[int, list[int]]:
    """(prefix tokens including the expanded image tokens, suffix tokens per question)."""
    head, tail, images = judge._split_prompt(image)
    prefix = judge._model_inputs(head, images)["input_ids"].shape[1]
    suffixes = [len(judge.tokenizer(q + tail, add_special_tokens=False)["input_ids"]) for q in asked]
    return prefix, suffixes


def seconds(fn, repeats: int, device: str) -> float:
    """Median wall time of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_one(judge: HFJudge, count: int, repeats: int, device: str, size: int) -> dict[str, float]:
    image = Image.fromarray(np.random.default_rng(count).integers(0, 256, (size, size, 3), dtype=np.uint8))
    asked = questions(count)
    reused = judge.p_yes_with_prefix_cache(image, asked)
    full = [judge.p_yes_full_forward(image, q) for q in asked]
    prefix_tokens, suffix_tokens = token_counts(judge, image, asked)
    t_prefix = seconds(lambda: judge.p_yes_with_prefix_cache(image, asked), repeats, device)
    t_full = seconds(lambda: [judge.p_yes_full_forward(image, q) for q in asked], repeats, device)
    ideal = sum(prefix_tokens + s for s in suffix_tokens) / (prefix_tokens + sum(suffix_tokens))
    return {
        "prefix_s": t_prefix,
        "full_s": t_full,
        "ratio": t_full / t_prefix,
        "ideal": ideal,
        "prefix_tokens": prefix_tokens,
        "suffix_tokens": statistics.mean(suffix_tokens),
        "max_abs_dp": max(abs(a - b) for a, b in zip(reused, full, strict=True)),
    }


def bench_http(images: int, count: int, latency: float, concurrency: int) -> dict[str, float]:
    """Seconds for DVReward over `images` images of `count` questions each, three ways (see the docstring)."""
    from evalkit.dvreward.format import Decomposition
    from evalkit.judges.openai_http import OpenAIJudge
    from evalkit.judges.server import JudgeServer
    from evalkit.rewards.dvreward import DVReward
    from evalkit.testing.served import ScriptedJudgeModel

    pictures = [
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8))
        for i in range(images)
    ]
    prompts = [f"prompt {i}" for i in range(images)]
    asked = questions(count)
    found = {
        prompt: Decomposition.from_dict({
            "prompt": prompt,
            "semantic_questions": [
                {"question_type": "semantic", "question": f"{q} ({i})", "is_valid": True, "tag": "Attribute"}
                for q in asked[:-1]
            ],
            "quality_questions": [
                {"question_type": "quality", "question": f"Is image {i} sharp?", "is_valid": True, "tag": "Clarity"}
            ],
        })
        for i, prompt in enumerate(prompts)
    }  # fmt: skip
    seconds, rewards = {}, {}
    for mode, window, workers in (
        ("sequential", 1, 1),
        ("per_image", concurrency, 1),
        ("images", concurrency, None),
    ):
        with JudgeServer(ScriptedJudgeModel(), latency=latency) as server:
            judge = OpenAIJudge(server.model_name, base_url=server.url, concurrency=window, timeout=60.0)
            reward = DVReward(judge, questions=found, workers=workers)
            start = time.perf_counter()
            rewards[mode] = [v.reward for v in reward.verify(pictures, prompts)]
            seconds[mode] = time.perf_counter() - start
            judge.close()
    if not rewards["sequential"] == rewards["per_image"] == rewards["images"] or None in rewards["images"]:
        raise SystemExit(f"rewards differ between modes or abstain: {rewards}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=["tiny", "small"], choices=sorted(CONFIGS))
    parser.add_argument("--questions", nargs="+", type=int, default=[4, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (shared machines: keep it low)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (the processor resizes)")
    parser.add_argument(
        "--system-prompt",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="DVReward's auditor prompt",
    )
    parser.add_argument("--json", default=None, help="append the measurements to this JSONL file")
    parser.add_argument("--http-images", type=int, default=0, help="also the HTTP mode over N images")
    parser.add_argument("--http-latency", type=float, default=0.25, help="server seconds per request")
    parser.add_argument("--http-concurrency", type=int, default=32, help="the HTTP judge's maximum window")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(
        f"device {args.device}, dtype {args.dtype}, threads {args.threads}, median of {args.repeats}, "
        f"system prompt {'on' if args.system_prompt else 'off'}"
    )
    header = f"{'judge':<6} {'Q':>3} {'P tok':>6} {'S tok':>6} {'prefix s/img':>13} {'full s/img':>11}"
    print(header + f" {'ratio':>6} {'ideal':>6} {'max|dp|':>8}")
    for name in args.configs:
        judge = build_judge(name, args.device, dtype, VERIFIER_SYSTEM_PROMPT if args.system_prompt else None)
        for count in args.questions:
            r = bench_one(judge, count, args.repeats, args.device, args.size)
            print(
                f"{name:<6} {count:>3} {r['prefix_tokens']:>6} {r['suffix_tokens']:>6.1f} "
                f"{r['prefix_s']:>13.4f} {r['full_s']:>11.4f} {r['ratio']:>6.2f} {r['ideal']:>6.2f} "
                f"{r['max_abs_dp']:>8.1e}"
            )
            emit(
                args.json,
                bench="dvreward_verify",
                config=f"{name} Q={count} {args.dtype}",
                device=args.device,
                ratio=r["ratio"],
                ratio_of="one request per question / prefix reuse",
                images_per_s=1.0 / r["prefix_s"],
                peak_mem_gb=peak_cuda_gb(args.device),
                ideal=r["ideal"],
                max_abs_dp=r["max_abs_dp"],
            )
    if args.http_images:
        print(
            f"\nHTTP judge, local server with {args.http_latency:g} s per request, {args.http_images} images, "
            f"window up to {args.http_concurrency}"
        )
        print(
            f"{'Q':>3} {'sequential s':>13} {'one image at a time s':>22} {'images together s':>18} {'ratios':>14}"
        )
        for count in args.questions:
            t = bench_http(args.http_images, count, args.http_latency, args.http_concurrency)
            vs_image, vs_seq = t["per_image"] / t["images"], t["sequential"] / t["images"]
            print(
                f"{count:>3} {t['sequential']:>13.2f} {t['per_image']:>22.2f} {t['images']:>18.2f} "
                f"{vs_seq:>6.1f}x {vs_image:>6.1f}x"
            )
            emit(
                args.json,
                bench="dvreward_verify_http",
                config=f"{args.http_images} images Q={count} latency={args.http_latency:g}",
                device="cpu",
                ratio=vs_image,
                ratio_of="one image at a time / images together",
                images_per_s=args.http_images / t["images"],
                peak_mem_gb=None,
                ratio_vs_sequential=vs_seq,
            )


if __name__ == "__main__":
    main()

"""Checks of the vllm:/sglang: judges and `evalkit judge serve` on a GPU machine with the engines installed.

Each step runs in its own process (an engine holds its GPU memory until the process ends) and writes one
JSON file; `compare` prints the table and fails when an engine's P(yes) strays from the hf: judge's.

    python bench/judge_engines_gpu.py reference --model M --out ref.json        # hf: judge (transformers)
    python bench/judge_engines_gpu.py inproc --backend vllm --model M --out v.json
    python bench/judge_engines_gpu.py served --backend vllm --model M --out s.json
    python bench/judge_engines_gpu.py compare ref.json v.json s.json [--tol 0.05]

bench/judge_engines_gpu.sh runs all of them for every engine that is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

QUESTIONS = [
    "Is there a cat in the image?",
    "Is the image mostly red?",
    "Are there two cars in the image?",
    "Is there any text in the image?",
    "Is the image a photograph?",
    "Is there a person in the image?",
    "Is the sky visible?",
    "Is the image blurry?",
    "Are there more than three objects?",
    "Is the main object on the left?",
    "Is there a dog in the image?",
    "Is the background white?",
    "Is it night time in the image?",
    "Is there a clock in the image?",
    "Does the image look distorted?",
    "Is the image well lit?",
]


def images(count: int, size: int) -> list[Image.Image]:
    """Smooth random colour fields (deterministic), so every question has a non-trivial answer."""
    result = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        result.append(Image.fromarray(small).resize((size, size), Image.BILINEAR))
    return result


def model_folder(model: str) -> str:
    if model != "tiny":
        return model
    from evalkit.testing.judges import tiny_qwen2vl_path

    return str(tiny_qwen2vl_path())


def answers_of(
    judge, pictures: list[Image.Image], questions: list[str]
) -> tuple[list[list[float | None]], float]:
    started = time.perf_counter()
    values = []
    for picture in pictures:
        values.append([getattr(a, "p_yes", None) for a in judge.answer_yes_no(picture, questions)])
    return values, time.perf_counter() - started


def reference(args) -> dict:
    from evalkit.judges.hf import HFJudge

    judge = HFJudge.from_pretrained(model_folder(args.model), device=args.device, dtype=args.dtype)
    values, seconds = answers_of(judge, images(args.images, args.size), QUESTIONS[: args.questions])
    return {"step": "reference (hf:)", "p_yes": values, "seconds": seconds}


def inproc(args) -> dict:
    import evalkit
    from evalkit.dvreward.alphagrpo import AlphaGRPODVReward
    from evalkit.judges import load_judge
    from evalkit.judges.messages import image_to_data_url

    options: dict = {"dtype": args.engine_dtype} if args.engine_dtype else {}
    if args.top_logprobs:
        options["top_logprobs"] = args.top_logprobs
        if args.backend == "vllm":
            options["max_logprobs"] = max(20, args.top_logprobs)
    started = time.perf_counter()
    judge = load_judge(f"{args.backend}:{model_folder(args.model)}", **options)
    load_seconds = time.perf_counter() - started
    pictures = images(args.images, args.size)
    questions = QUESTIONS[: args.questions]
    values, batched = answers_of(judge, pictures, questions)  # one engine call per image
    started = time.perf_counter()
    for picture in images(args.images, args.size + 8):  # new pixels: nothing cached from above
        for question in questions:
            judge.answer_yes_no(picture, [question])  # one request per question
    one_by_one = time.perf_counter() - started
    official = AlphaGRPODVReward(complete=judge.chat_completion, model=judge.model)
    url = image_to_data_url(pictures[0])
    alpha = [official.ask(question, url) for question in questions[:4]]
    return {
        "step": f"{args.backend}: in-process",
        "version": evalkit.__version__,
        "p_yes": values,
        "seconds": batched,
        "load_seconds": load_seconds,
        "one_request_per_question_seconds": one_by_one,
        "alphagrpo_scores": alpha,
        "stats": dict(judge.stats),
    }


def served(args) -> dict:
    from evalkit.judges import load_judge

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable,
        "-m",
        "evalkit.cli",
        "judge",
        "serve",
        "--backend",
        args.backend,
        model_folder(args.model),
    ]
    argv += ["--port", str(port), "--served-name", "judge-under-test", "--timeout", "900"]
    if args.engine_dtype:
        argv += ["--server-arg=--dtype", f"--server-arg={args.engine_dtype}"]
    if args.top_logprobs and args.backend == "vllm":  # the last --max-logprobs wins
        argv += ["--server-arg=--max-logprobs", f"--server-arg={args.top_logprobs}"]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    flags = None
    for line in process.stdout:  # type: ignore[union-attr]
        print(line, end="", flush=True)
        if line.startswith("use: "):
            flags = shlex.split(line.removeprefix("use: "))
            break
    if flags is None:
        process.wait()
        return {
            "step": f"{args.backend}: evalkit judge serve",
            "error": f"no flags printed (exit {process.returncode})",
        }
    ready_seconds = time.perf_counter() - started
    try:
        top = {"top_logprobs": args.top_logprobs} if args.top_logprobs else {}
        judge = load_judge(flags[1], url=flags[3], concurrency=16, timeout=120.0, **top)
        values, seconds = answers_of(judge, images(args.images, args.size), QUESTIONS[: args.questions])
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    return {
        "step": f"{args.backend}: evalkit judge serve",
        "p_yes": values,
        "seconds": seconds,
        "ready_seconds": ready_seconds,
        "flags": flags,
        "exit_code_after_sigint": code,
    }


def compare(args) -> int:
    rows = [json.loads(Path(path).read_text()) for path in args.files]
    ref = rows[0]
    failed = 0
    print(f"{'step':<34} {'max |dP(yes)|':>14} {'failures':>9} {'seconds':>8}  notes")
    for row in rows:
        if "error" in row:
            print(f"{row['step']:<34} {'-':>14} {'-':>9} {'-':>8}  FAILED: {row['error']}")
            failed += 1
            continue
        pairs = [
            (a, b)
            for ra, rb in zip(ref["p_yes"], row["p_yes"], strict=True)
            for a, b in zip(ra, rb, strict=True)
        ]
        missing = sum(b is None for _, b in pairs)
        diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
        worst = max(diffs) if diffs else float("nan")
        notes = []
        if "one_request_per_question_seconds" in row:
            notes.append(
                f"batched {row['one_request_per_question_seconds'] / row['seconds']:.1f}x faster than 1/question"
            )
            notes.append(
                "alphagrpo " + ", ".join("-" if s is None else f"{s:.3f}" for s in row["alphagrpo_scores"])
            )
        if "exit_code_after_sigint" in row:
            notes.append(
                f"ready in {row['ready_seconds']:.0f}s, exit {row['exit_code_after_sigint']} after SIGINT"
            )
            failed += row["exit_code_after_sigint"] != 0
        bad = row is not ref and (not diffs or worst > args.tol or missing > len(pairs) // 4)
        failed += bad
        print(
            f"{row['step']:<34} {worst:>14.4f} {missing:>9} {row['seconds']:>8.2f}  {'; '.join(notes)}{'  FAIL' if bad else ''}"
        )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["reference", "inproc", "served", "compare"])
    parser.add_argument("files", nargs="*", help="compare: the JSON files, reference first")
    parser.add_argument("--backend", choices=["vllm", "sglang"], default="vllm")
    parser.add_argument("--model", default="tiny", help="a local judge folder (a real VLM), or tiny")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", help="hf: reference dtype")
    parser.add_argument("--engine-dtype", default=None, help="engine dtype (default: the engine's auto)")
    parser.add_argument(
        "--top-logprobs",
        type=int,
        default=None,
        help="alternatives per token (a random model: its vocabulary)",
    )
    parser.add_argument("--tol", type=float, default=0.05, help="max |dP(yes)| against the hf: judge")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.step == "compare":
        return compare(args)
    result = {"reference": reference, "inproc": inproc, "served": served}[args.step](args)
    args.out.write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k != "p_yes"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

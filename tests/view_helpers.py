"""Tiny real runs of every benchmark (and SRR, and an ablate-reward evaluation) for the viewer and plot tests.

Everything goes through the real stages on tiny random models: the CLI's `run`/`gen`/`score`, SRR's
`refine_run` with a scripted refiner and DVReward over a judge double, and the reward ablation's evaluator.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from fixture_paths import BENCHMARKS
from judged_helpers import build_data_dir
from PIL import Image

from evalkit.generators.base import Generation
from evalkit.judges.base import YesNoAnswer

FAST_CHAT = ["--score-option", "max_tokens=8", "--score-option", "max_attempts=1"]


def evalkit(*args: Any) -> None:
    """`evalkit ARGS...` in this process; fails on a non-zero exit."""
    from evalkit.cli import main

    argv = sys.argv
    sys.argv = ["evalkit", *map(str, args)]
    try:
        main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise AssertionError(f"evalkit {' '.join(map(str, args))} exited {e.code}") from None
    finally:
        sys.argv = argv


class InvertRefiner:
    """A Refiner that 'reflects' in words and redraws the image inverted."""

    def refine(self, image: Image.Image, prompt: str, *, seed: int, **options: Any) -> Generation:
        pixels = 255 - np.asarray(image, dtype=np.uint8)
        think = f"The image does not show {prompt!r}. Edit: invert the colours."
        return Generation(Image.fromarray(pixels), think=think, seconds=0.001)


class BrightJudge:
    """A judge double for DVReward: P(yes) is the image's mean brightness."""

    name = "bright-judge"

    def config(self) -> dict[str, Any]:
        return {"model": self.name, "snapshot": "1"}

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer]:
        p = float(np.asarray(image, dtype=float).mean() / 255)
        return [YesNoAnswer(p, "logprobs", "1") for _ in questions]


def _one(runs: Path, protocol: str) -> Path:
    found = sorted((runs / protocol).iterdir(), key=lambda p: p.stat().st_mtime)
    return found[-1]


def srr_geneval_run(runs: Path, limit: int = 2) -> Path:
    """A GenEval run refined by SRR (K=2, gate self on DVReward), then scored."""
    from evalkit.benchmarks.geneval import GenEval
    from evalkit.dvreward import Decomposition, Question
    from evalkit.rewards.dvreward import DVReward
    from evalkit.runs import Run
    from evalkit.srr import refine_run

    srr_runs = runs / "srr"
    evalkit("gen", "geneval", "--model", "tiny-sd3", "--limit", limit, "--seed", 11,
            "--data-dir", BENCHMARKS, "--runs-dir", srr_runs)  # fmt: skip
    run = Run(_one(srr_runs, "geneval"))
    bench = GenEval(BENCHMARKS)
    samples = bench.samples()[:limit]
    questions = {
        s.prompt: Decomposition(
            s.prompt,
            [Question(f"Is this {s.prompt}?", "semantic", "Object")],
            [Question("Is the image sharp?", "quality", "Clarity")],
        )
        for s in samples
    }
    reward = DVReward(BrightJudge(), questions=questions)
    refine_run(run, bench, samples, InvertRefiner(), rounds=2, gate="self", threshold=0.99,
               reward=reward, global_seed=11)  # fmt: skip
    evalkit("score", run.root, "--detector", "tiny", "--data-dir", BENCHMARKS)
    return run.root


def ablation_eval_runs(out: Path) -> Path:
    """The evaluation folders of `evalkit ablate-reward` (base row, GenEval only) as its evaluator writes them."""
    from evalkit.grpo.ablate import make_evaluator

    evaluate = make_evaluator(
        "tiny-sd3", ["geneval"], data_dir=BENCHMARKS, runs_dir=out / "tiny-sd3" / "eval", judge=None,
        judge_url=None, detector="tiny", limit=1, seed=0, batch_size=4,
    )  # fmt: skip
    evaluate("base", None)
    return out


def build_all_runs(root: Path) -> dict[str, Path]:
    """Every benchmark's tiny run; keys: geneval, geneval_seed7, tiif, wise, dpg, gedit, srr, ablation."""
    data = build_data_dir(root)
    runs = root / "runs"
    tiny = ["--model", "tiny-sd3", "--runs-dir", runs]
    judged = ["--runs-dir", runs, "--judge", "tiny", "--data-dir", data]
    commands = {  # key: (protocol folder, arguments after `evalkit run`)
        "geneval": ("geneval", ["geneval", *tiny, "--detector", "tiny", "--limit", 2, "--data-dir", BENCHMARKS]),
        "geneval_seed7": ("geneval", ["geneval", *tiny, "--detector", "tiny", "--limit", 2, "--seed", 7,
                                      "--data-dir", BENCHMARKS]),
        "tiif": ("tiif", ["tiif", "--model", "tiny-sd3", *judged, "--limit", 2, *FAST_CHAT, "--bench-option", "split=testmini"]),
        "wise": ("wise@legacy", ["wise", "--model", "tiny-sd3", *judged, "--limit", 2, *FAST_CHAT]),
        "dpg": ("dpg", ["dpg", "--model", "tiny-sd3", *judged, "--limit", 1]),
        "gedit": ("gedit", ["gedit", *judged, "--model", "tiny-sd3-edit", *FAST_CHAT[:2]]),
    }  # fmt: skip
    out = {}
    for key, (protocol, args) in commands.items():
        evalkit("run", *args)
        out[key] = _one(runs, protocol)
    out["srr"] = srr_geneval_run(root)
    out["ablation"] = ablation_eval_runs(root / "ablate-reward")
    return out


def train_tiny_grpo(out: Path, epochs: int = 3) -> Path:
    """A real Flow-GRPO training folder (metrics.jsonl) on the tiny SD3 with two rewards and a KL term."""
    from evalkit.grpo.config import GRPOConfig
    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.brightness import BrightnessScorer
    from evalkit.testing.sd3 import tiny_sd3_pipeline

    class Darkness:
        name = "darkness"

        def score(self, images, prompts, metadata):
            return [1.0 - s for s in BrightnessScorer().score(images, prompts, metadata)]

    config = GRPOConfig(
        output_dir=str(out), mixed_precision="no", resolution=64, num_steps=4, group_size=4, sample_batch_size=8,
        train_batch_size=8, num_batches_per_epoch=1, gradient_accumulation_steps=1, learning_rate=3e-3,
        beta=0.01, rewards={"brightness": 1.0, "darkness": 0.5}, lora_rank=4, lora_alpha=128,
        lora_target_modules=["to_q", "to_k", "to_v", "to_out.0"], max_sequence_length=16, save_freq=0,
        ema=False, async_rewards=False, seed=0,
    )  # fmt: skip
    scorers = {"brightness": BrightnessScorer(), "darkness": Darkness()}
    prompts = ["a photo of a cat", "a red car", "two dogs", "a blue bird"]
    GRPOTrainer(config, tiny_sd3_pipeline(), scorers, prompts).train(num_epochs=epochs)
    return out

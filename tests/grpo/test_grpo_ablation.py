"""The reward-ablation driver end to end on the tiny SD3 with two trivial rewards, and the table format."""

from __future__ import annotations

import math

import numpy as np
import torch
from fixture_paths import REPO

from evalkit.grpo.ablation import (
    AblationSpec,
    Column,
    format_table,
    load_ablation_spec,
    run_reward_ablation,
)
from evalkit.grpo.config import GRPOConfig
from evalkit.rewards.brightness import BrightnessScorer
from evalkit.testing.sd3 import tiny_sd3_pipeline


class Darkness:
    name = "darkness"

    def score(self, images, prompts, metadata):
        return [1.0 - s for s in BrightnessScorer().score(images, prompts, metadata)]


def test_shipped_specs_are_valid():
    for name in ("sd35m.yaml", "tiny-sd3.yaml"):
        spec = load_ablation_spec(REPO / "reward_ablation" / name)
        assert [r.name for r in spec.rewards] == [
            "pickscore",
            "viescore",
            "hpsv3",
            "unifiedreward",
            "dvreward",
        ]
        assert [c.title for c in spec.columns] == ["TIIF short", "TIIF long", "GenEval"]
        for run in spec.rewards:
            GRPOConfig.from_dict({**spec.train, **run.train})  # every field is a real trainer field
    assert load_ablation_spec(REPO / "reward_ablation" / "sd35m.yaml").reward("pickscore").train == {
        "beta": 0.01
    }


def test_format_table_bolds_best_and_marks_missing():
    rows = {"base": {"a": 0.5, "b": 3.0}, "x": {"a": 0.75, "b": math.nan}, "y": {"a": 0.25}}
    columns = [Column("a", "A"), Column("b", "B", fmt=".1f", higher_is_better=False)]
    markdown, latex = format_table(rows, columns, {"base": "SD (base)"})
    assert "| SD (base) | 0.50 | 3.0 |" in markdown  # a lone value is not "best" of anything
    assert "| x | **0.75** | – |" in markdown and "| y | 0.25 | – |" in markdown
    assert "x & \\textbf{0.75} & -- \\\\" in latex and "\n\\begin{tabular}{lrr}" in latex


def test_format_table_never_bolds_ties_and_prints_footnotes_once():
    rows = {"base": {"a": 0.0}, "x": {"a": 0.0}, "y": {"a": 0.0}}
    notes = ["partial evaluation: the first 4 samples", "tiny random weights"]
    markdown, latex = format_table(rows, [Column("a", "A")], footnotes=notes)
    assert "**" not in markdown and "\\textbf" not in latex
    assert markdown.count("partial evaluation") == 1 and markdown.rstrip().endswith("2. tiny random weights")
    assert latex.count("partial evaluation") == 1


def test_tiny_ablation_runs_end_to_end_and_resumes(tmp_path):
    train = dict(
        mixed_precision="no", resolution=64, num_steps=4, group_size=4, sample_batch_size=8,
        train_batch_size=8, num_batches_per_epoch=1, gradient_accumulation_steps=1, learning_rate=3e-3,
        lora_rank=4, lora_alpha=128, lora_target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        max_sequence_length=16, beta=0.0, ema=False, async_rewards=False, num_epochs=2, save_freq=1, seed=0,
    )  # fmt: skip
    spec = AblationSpec.from_dict(
        {
            "backbone": "tiny-sd3",
            "train": train,
            "rewards": {"brightness": {}, "darkness": {"title": "Dark"}},
            "columns": [{"key": "brightness", "title": "Brightness", "fmt": ".4f"}],
        }
    )
    calls = {"scorers": 0, "evals": []}

    def scorers(name, options):
        calls["scorers"] += 1
        return BrightnessScorer() if name == "brightness" else Darkness()

    def evaluate(row, lora):
        calls["evals"].append(row)
        pipe = tiny_sd3_pipeline()
        if lora is not None:
            pipe.load_lora_weights(lora)
        images = pipe(["a cat", "a red car"], num_inference_steps=4, height=64, width=64,
                      max_sequence_length=16, generator=torch.Generator().manual_seed(0)).images  # fmt: skip
        return {"brightness": float(np.mean(BrightnessScorer().score(images, ["", ""], [{}, {}])))}

    prompts = ["a photo of a cat", "a red car", "two dogs"]
    stages: list[str] = []
    result = run_reward_ablation(
        spec, tiny_sd3_pipeline, scorers, evaluate, prompts, tmp_path, progress=stages.append
    )
    assert [line.split(" (")[0] for line in stages] == [
        "[1/5] training brightness", "[2/5] training darkness", "[3/5] evaluating base",
        "[4/5] evaluating brightness", "[5/5] evaluating darkness",
    ]  # fmt: skip
    assert list(result.rows) == ["base", "brightness", "darkness"]
    assert (tmp_path / "ablation.md").read_text() == result.markdown
    assert "| tiny-sd3 (base) |" in result.markdown and "| Dark |" in result.markdown
    assert result.markdown.count("**") == 2 and "\\textbf" in result.latex
    for name in ("brightness", "darkness"):
        assert (result.lora_paths[name] / "pytorch_lora_weights.safetensors").exists()
        assert (tmp_path / name / "checkpoints" / "checkpoint-2" / "trainer_state.pt").exists()
    assert calls["scorers"] == 2 and calls["evals"] == ["base", "brightness", "darkness"]

    # A second call finds every LoRA and evaluation on disk: nothing is retrained or re-evaluated.
    again = run_reward_ablation(spec, tiny_sd3_pipeline, scorers, evaluate, prompts, tmp_path)
    assert again.rows == result.rows and calls["scorers"] == 2 and len(calls["evals"]) == 3


def test_tiny_spec_scorers_all_build_offline():
    """Every reward of reward_ablation/tiny-sd3.yaml builds from its options and scores (or abstains)."""
    from PIL import Image

    from evalkit.rewards.factory import build_reward

    spec = load_ablation_spec(REPO / "reward_ablation" / "tiny-sd3.yaml")
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    for run in spec.rewards:
        scorer = build_reward(run.name, dict(run.scorer))
        (value,) = scorer.score([image], ["a red cat"], [{}])
        assert value is None or math.isfinite(value), run.name

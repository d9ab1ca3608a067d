"""`evalkit train alphagrpo` end to end on tiny-bagel (both presets), and its one-line user errors."""

from __future__ import annotations

import json

from evalkit.grpo.alphagrpo import config as presets

TINY = [
    "num_gpus=1",
    "sample.train_batch_size=4",
    "sample.num_image_per_prompt=4",
    "total_batch_size=1",
    "resolution=32",
    "sample.num_steps=6",
    "sample.eval_num_steps=4",
]
QUESTIONS = {
    "prompt": "a red cube",
    "semantic_questions": [
        {
            "question_type": "semantic",
            "question": "Is there a red cube?",
            "is_valid": True,
            "tag": "Existence",
        }
    ],
    "quality_questions": [
        {"question_type": "quality", "question": "Are the edges sharp?", "is_valid": True, "tag": "Geometry"}
    ],
}


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def test_both_presets_train_from_the_cli(cli, tmp_path):
    prompts = tmp_path / "train.jsonl"
    prompts.write_text(json.dumps(QUESTIONS) + "\n")
    runs = {
        "alphagrpo_t2iThink": [*TINY, "reward_fn={brightness: 1.0}"],
        "alphagrpo_reflect": TINY,  # DVReward on the questions of the JSONL, judged by the tiny judge
    }
    for preset, overrides in runs.items():
        out = tmp_path / preset
        judge = ["--judge", "tiny"] if preset == "alphagrpo_reflect" else []
        code, stdout, stderr = cli(
            "train", "alphagrpo", "--prompts", prompts, "--preset", preset, "--steps", "1",
            "--out", out, "--max-think-tokens", "4", *judge, *_sets(overrides),
        )  # fmt: skip
        assert code in (0, None), stderr
        assert "1 step(s) trained" in stdout
        assert (out / "final" / "adapter" / "adapter_config.json").exists()
        want = presets.resolve(preset, presets.parse_overrides(overrides))
        assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(want))
        record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert record["samples"] == 4


def test_user_errors_are_one_line_exit_2(cli, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    cases = {
        ("--preset", "alphagrpo_reflekt"): "did you mean 'alphagrpo_reflect'",
        ("--set", "train.learning_rat=1"): "did you mean 'train.learning_rate'",
        ("--set", "num_gpus=1", "--set", "sample.train_batch_size=4"): "must be a multiple of",
        ("--set", "num_gpus=1", "--set", "sample.train_batch_size=14"): "needs an explicit judge",
    }
    for extra, message in cases.items():
        code, _, stderr = cli("train", "alphagrpo", "--prompts", prompts, *extra)
        assert code == 2 and message in stderr and stderr.strip().count("\n") == 0, stderr
    code, _, stderr = cli("train", "alphagrpo", "--prompts", tmp_path / "missing.jsonl")
    assert code == 2 and "no prompts file" in stderr

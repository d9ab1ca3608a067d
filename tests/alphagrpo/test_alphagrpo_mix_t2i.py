"""`alphagrpo_reflect_mix_t2i`: SRR stage 1 is a trained RT2I rollout; each prompt's lowest-reward T2I image
(over all ranks) is refined; one round trains both batches with the doubled accumulation count."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from alphagrpo_fixtures import ROOT
from fixture_paths import need

from evalkit.bagel.train import TrainableBagel
from evalkit.errors import EvalkitError
from evalkit.grpo.alphagrpo import config as presets
from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer, TrainerOptions, validate
from evalkit.grpo.reward_mix import WeightedReward
from evalkit.testing.bagel import random_pipeline, tiny_config, use_transparent_decoder

PRESET = "alphagrpo_reflect_mix_t2i"
TINY = {
    "num_gpus": 1,
    "sample.train_batch_size": 4,
    "sample.num_image_per_prompt": 4,
    "total_batch_size": 1,
    "resolution": 32,
    "sample.num_steps": 6,
    "train.timestep_fraction": 0.5,
    "sample.sde_window_range": [0, 4],
    "train.learning_rate": 1e-2,
    "reward_fn": {"brightness": 1.0},
}


def test_preset_is_the_official_one():
    path = ROOT / "config_presets.json"
    need(path, "AlphaGRPO config_presets.json fixture")
    official = json.loads(path.read_text())["presets"]
    got = json.loads(json.dumps(presets.resolve(PRESET)))
    assert got == official[PRESET]
    assert got["train"]["mix_t2i_task"] is True
    reflect = official["alphagrpo_reflect"]["_derived"]["accelerate_gradient_accumulation_steps"]
    assert got["_derived"]["accelerate_gradient_accumulation_steps"] == 2 * reflect
    validate(got, TrainerOptions(run_dir="unused", judge="tiny"), world_size=got["num_gpus"])
    t2i = presets.resolve("alphagrpo_t2iThink", {"train.mix_t2i_task": True})
    with pytest.raises(EvalkitError, match="needs train.task=reflect"):
        validate(t2i, TrainerOptions(run_dir="unused", judge="tiny"), world_size=t2i["num_gpus"])


class _Scripted:
    """The T2I batch scores `t2i`, the refined batch scores `refined` (calls come in this order)."""

    def __init__(self, t2i: list[float], refined: list[float]):
        self.lists = [t2i, refined]

    def score(self, images, prompts, metadata):
        return list(self.lists.pop(0)) if self.lists else [0.5] * len(images)


def _trainer(tmp_path, reward=None, **options) -> AlphaGRPOTrainer:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pipe = use_transparent_decoder(random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1)))
    model = TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=False)
    config = presets.resolve(PRESET, TINY)
    opts = TrainerOptions(run_dir=tmp_path, steps=2, max_think_tokens=4, save_every=10, **options)
    return AlphaGRPOTrainer(model, config, [{"prompt": "a red cube"}], opts, reward=reward)


def test_lowest_t2i_image_is_refined_and_both_batches_train(tmp_path):
    t2i_scores, refined = [0.3, 0.1, 0.6, 0.2], [0.5, 0.05, 0.7, 0.2]
    trainer = _trainer(tmp_path, WeightedReward({"s": _Scripted(t2i_scores, refined)}, {"s": 1.0}))
    named = dict(trainer.model.peft.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items() if "lora_" in n}
    timing = {"rollout": 0.0, "reward": 0.0, "backward": 0.0}
    with ThreadPoolExecutor(max_workers=1) as executor:
        rolled = trainer._rollout(0, executor, timing)
        assert [b.task for b, _ in rolled] == ["t2i", "edit"]
        (t2i, _), (edit, _) = rolled
        lowest = t2i.images[1]  # score 0.1
        assert all(image is lowest for image in edit.init_images)
        assert edit.init_rewards == pytest.approx([0.1] * 4)
        assert edit.window is not None and edit.cfg != t2i.cfg  # edit guidance for the refinement
    trainer = _trainer(tmp_path, WeightedReward({"s": _Scripted(t2i_scores, refined)}, {"s": 1.0}))
    named = dict(trainer.model.peft.named_parameters())
    record = trainer.train_step()
    assert record["samples_t2i"] == 4 and record["samples_edit"] == 4 and record["skipped_batches"] == 0
    assert record["backward_calls"] == trainer.config["_derived"]["accelerate_gradient_accumulation_steps"]
    assert record["fpr_rectified"] == sum(r <= 0.1 for r in refined)
    assert record["image_ratio"] == 1.0 and record["text_ratio"] == 1.0
    assert any(not torch.equal(named[n], before[n]) for n in before)


@pytest.mark.parametrize(("compat", "want"), [("intended", 0.1), ("official", 1.1)])
def test_init_reward_image_only_or_official_total(tmp_path, compat, want):
    """Official: the T2I sample's total (image + think format); intended: its image reward."""
    trainer = _trainer(tmp_path, mix_t2i_compat=compat)
    batch = SimpleNamespace(prompts=["a", "a", "b"], images=["A0", "A1", "B0"])
    rewards = {"ori_avg": [0.3, 0.1, 0.4], "avg": [1.3, 1.1, 0.4]}
    init = trainer._lowest_t2i(batch, SimpleNamespace(rewards=rewards), {"valid": [0, 1, 2]})
    assert init["a"] == ("A1", pytest.approx(want)) and init["b"][0] == "B0"
    abstained = trainer._lowest_t2i(
        batch, SimpleNamespace(rewards={"ori_avg": [0.3], "avg": [1.3]}), {"valid": [1]}
    )
    assert abstained["b"] == ("B0", None)  # no reward for b: its refinements abstain too


def test_mix_preset_trains_from_the_cli(cli, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\n")
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    code, stdout, stderr = cli(
        "train", "alphagrpo", "--prompts", prompts, "--preset", PRESET, "--steps", "2", "--out", tmp_path / "run",
        "--max-think-tokens", "4", *[a for s in sets for a in ("--set", s)],
    )  # fmt: skip
    assert code in (0, None), stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["samples_t2i"] for r in records] == [4, 4] and [r["samples_edit"] for r in records] == [4, 4]
    assert (tmp_path / "run" / "final" / "adapter" / "adapter_model.safetensors").exists()


def test_kl_preset_trains_without_a_reflective_judge(tmp_path):
    """`alphagrpo_reflect_kl`: KL terms against the adapter-disabled model; its reflective format judge
    only feeds a logged value in SRR, so the preset trains without one."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    pipe = use_transparent_decoder(random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1)))
    model = TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=False)
    config = presets.resolve(
        "alphagrpo_reflect_kl", {**TINY, "sample.train_batch_size": 8, "sample.num_image_per_prompt": 8}
    )
    opts = TrainerOptions(run_dir=tmp_path, steps=3, max_think_tokens=4, save_every=10)
    trainer = AlphaGRPOTrainer(model, config, [{"prompt": "a red cube"}], opts)
    for _ in range(3):
        record = trainer.train_step()
        if record["skipped_batches"] == 0:
            break
    assert record["image_kl_loss"] == 0.0 and record["backward_calls"] > 0  # on-policy first minibatch
    t2i = presets.resolve("alphagrpo_t2iThink", {"text_reward_fn": {"reflective_think_format": 1.0}})
    with pytest.raises(EvalkitError, match="not wired"):
        validate(t2i, TrainerOptions(run_dir="unused"), world_size=t2i["num_gpus"])

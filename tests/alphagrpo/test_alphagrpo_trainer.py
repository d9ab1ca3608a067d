"""AlphaGRPO training loop on a tiny BAGEL (CPU): on-policy ratios, LoRA-only updates, learning, FPR,
abstentions, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from evalkit.bagel.train import TrainableBagel
from evalkit.errors import EvalkitError
from evalkit.grpo.alphagrpo import config as presets
from evalkit.grpo.alphagrpo.trainer import AlphaGRPOTrainer, TrainerOptions, validate
from evalkit.grpo.reward_mix import WeightedReward
from evalkit.testing.bagel import random_pipeline, tiny_config, use_transparent_decoder

PROMPTS = [{"prompt": "a red cube"}, {"prompt": "a cat"}, {"prompt": "the sky"}]


def _config(task: str, group: int = 4, lr: float = 1e-2, **extra) -> dict:
    preset = "alphagrpo_t2iThink" if task == "t2i" else "alphagrpo_reflect"
    overrides = {
        "num_gpus": 1,
        "sample.train_batch_size": group,
        "sample.num_image_per_prompt": group,
        "total_batch_size": 1,
        "resolution": 32,
        "sample.num_steps": 6,
        "train.timestep_fraction": 0.5,
        "sample.sde_window_range": [0, 4],
        "sample.eval_num_steps": 4,
        "train.learning_rate": lr,
        "reward_fn": {"brightness": 1.0},
        **extra,
    }
    return presets.resolve(preset, overrides)


def _model() -> TrainableBagel:
    torch.manual_seed(0)
    pipe = use_transparent_decoder(random_pipeline(tiny_config(hidden=32, layers=2, heads=2, kv_heads=1)))
    return TrainableBagel(pipe, lora_rank=4, lora_alpha=8, gradient_checkpointing=False)


def _trainer(tmp_path, task="t2i", steps=1, reward=None, model=None, **kwargs) -> AlphaGRPOTrainer:
    torch.set_num_threads(1)
    config = _config(task, **kwargs)
    options = TrainerOptions(run_dir=tmp_path, steps=steps, max_think_tokens=4, save_every=2)
    return AlphaGRPOTrainer(model or _model(), config, PROMPTS, options, reward=reward)


@pytest.mark.parametrize("task", ["t2i", "reflect"])
def test_first_minibatch_is_on_policy_and_only_lora_moves(tmp_path, task):
    trainer = _trainer(tmp_path, task, group=8 if task == "reflect" else 4)
    named = dict(trainer.model.peft.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    for _ in range(3):  # reflect rounds can be skipped (nothing improved); train until one is not
        record = trainer.train_step()
        if record["skipped_batches"] == 0:
            break
    assert record["image_ratio"] == 1.0 and record["text_ratio"] == 1.0
    phases = record["time"]  # each phase booked once (SRR stage 1 is rollout + reward, not twice rollout)
    assert phases["rollout"] + phases["reward"] + phases["backward"] <= phases["total"]
    assert record["image_approx_kl"] == 0.0
    changed = {n for n, p in named.items() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(p.grad is None for p in named.values())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == json.loads(json.dumps(trainer.config))


@pytest.mark.parametrize(("task", "group"), [("t2i", 4), ("reflect", 8)])
def test_brightness_rises(tmp_path, task, group):
    trainer = _trainer(tmp_path, task, steps=30, group=group)
    rewards = [r["reward_mean"] for r in trainer.train()]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.05, rewards


class _Scripted:
    """Stage-1 images score `init`; refined images score `refined` in order (SRR checks)."""

    name = "scripted"

    def __init__(self, init: float, refined: list[float | None]):
        self.init, self.refined, self.calls = init, list(refined), 0

    def score(self, images, prompts, metadata):
        self.calls += 1
        if self.calls == 1:
            return [self.init] * len(images)
        return list(self.refined[: len(images)])


def test_fpr_replaces_non_improving_rewards(tmp_path):
    refined = [0.7, 0.4, 0.5, 0.9]
    scorer = _Scripted(0.5, refined)
    trainer = _trainer(tmp_path, "reflect", reward=WeightedReward({"s": scorer}, {"s": 1.0}))
    record = trainer.train_step()
    rectified = [r if r > 0.5 else 0.5 for r in refined]
    assert record["fpr_rectified"] == sum(r <= 0.5 for r in refined)
    assert record["reward_avg_mean"] == pytest.approx(sum(rectified) / len(rectified))
    assert record["reward_mean"] == pytest.approx(sum(refined) / len(refined))


def test_abstentions_are_counted_and_an_all_abstaining_round_stops(tmp_path):
    class Partial:
        def score(self, images, prompts, metadata):
            return [None if i % 2 else 0.1 * i for i in range(len(images))]

    trainer = _trainer(tmp_path / "a", reward=WeightedReward({"p": Partial()}, {"p": 1.0}))
    record = trainer.train_step()
    assert record["abstained"] == 2 and record["samples"] == 4

    class Never:
        def score(self, images, prompts, metadata):
            return [None] * len(images)

    trainer = _trainer(tmp_path / "b", reward=WeightedReward({"n": Never()}, {"n": 1.0}))
    with pytest.raises(EvalkitError, match="every sample abstained") as error:
        trainer.train_step()
    assert "\n" not in str(error.value)


def test_judged_rewards_need_an_explicit_judge(tmp_path):
    config = _config("t2i", reward_fn={"dvreward": 1.0})
    with pytest.raises(EvalkitError, match="needs an explicit judge"):
        validate(config, TrainerOptions(run_dir=tmp_path), world_size=1)
    with pytest.raises(EvalkitError, match="num_gpus=1 but 2"):
        validate(_config("t2i"), TrainerOptions(run_dir=tmp_path), world_size=2)


def test_resume_is_identical(tmp_path):
    straight = _trainer(tmp_path / "a", steps=4)
    want = straight.train()
    first = _trainer(tmp_path / "b", steps=2)
    first.train()
    resumed = _trainer(tmp_path / "b", steps=4)
    resumed.resume(first.checkpoint_dir(2))
    got = resumed.train()
    strip = [{k: v for k, v in r.items() if k != "time"} for r in want]
    assert [{k: v for k, v in r.items() if k != "time"} for r in got] == strip
    assert (first.checkpoint_dir(2) / "adapter" / "adapter_config.json").exists()

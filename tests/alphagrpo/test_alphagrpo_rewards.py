"""AlphaGRPO advantages, think-format rewards and RT2I / SRR reward post-processing (FPR) vs official."""

from __future__ import annotations

import pytest
from alphagrpo_fixtures import assert_scalar, assert_values, cases

from evalkit.grpo.advantages import PerPromptStatTracker
from evalkit.grpo.alphagrpo.advantages import AdvantageConfig, compute_advantages
from evalkit.grpo.alphagrpo.rewards import (
    PostprocessConfig,
    multi_score,
    reflective_think_format,
    srr_reward_postprocess,
    t2i_reward_postprocess,
    think_tag_format,
)
from evalkit.grpo.alphagrpo.sampling import num_train_timesteps


def _adv_config(config: dict, num_train: int) -> AdvantageConfig:
    fields = {k: v for k, v in config.items() if k in AdvantageConfig.__dataclass_fields__}
    return AdvantageConfig(**{**fields, "num_train_timesteps": num_train})


def _check_metrics(got: dict, want: dict):
    # `think_text_length` needs the think texts, which the advantages cases do not carry.
    for key, value in want.items():
        if key in got or key != "think_text_length":
            assert_scalar(got[key], value, key)


@pytest.mark.parametrize("case", cases("advantages"), ids=lambda c: c["case_id"])
def test_advantages(case):
    cfg = case["config"]
    config = _adv_config(cfg, num_train_timesteps(cfg["num_steps"], cfg["timestep_fraction"]))
    world = case["world_size"]
    for rank, want in enumerate(case["expected_per_rank"]):
        extra = {
            k: list(v)[rank * (len(v) // world) : (rank + 1) * (len(v) // world)]
            for k, v in case["rewards_extra"].items()
        }
        got = compute_advantages(
            case["prompts"],
            case["rewards_avg"],
            config,
            world_size=world,
            rank=rank,
            tracker=PerPromptStatTracker(global_std=cfg["global_std"]),
            local_extra=extra,
            prompts_mean=case["prompts_mean"],
        )
        assert got.should_skip == want["should_skip"]
        assert_values(got.advantages, want["advantages"], "advantages")
        assert_values(got.text_advantages, want["text_advantages"], "text_advantages")
        if want["advantages_dtype"] is not None:
            assert f"torch.{got.advantages.dtype}" == want["advantages_dtype"]
        _check_metrics(got.metrics, want["logged_metrics"])


def _scripted_judge(replies_by_attempt: dict, seen: list):
    """Replies in attempt order per text (the last one repeats), recording each call's temperature."""

    def judge(text: str, temperature: float) -> str:
        seen.append(temperature)
        replies = replies_by_attempt[text]
        return replies.pop(0) if len(replies) > 1 else replies[0]

    return judge


@pytest.mark.parametrize("case", cases("think_format"), ids=lambda c: c["case_id"])
def test_think_format(case):
    kind, weight = case["kind"], case["weight"]
    if kind == "think_tag_format":
        scores = think_tag_format(case["texts"])
        metas = None
    else:
        seen: list[float] = []
        replies = {k: list(v) for k, v in case["judge_replies_by_attempt"].items()}
        scores, metas = reflective_think_format(case["texts"], _scripted_judge(replies, seen))
        assert len(seen) == case["n_judge_calls"]
        assert sorted(set(seen)) == case["judge_temperatures_seen"]
    combined = multi_score({kind: scores}, {kind: weight})
    for key, want in case["expected"].items():
        if key == "metas":
            assert metas is not None
            assert metas["reasoning"] == want["reasoning"]
            assert_values(metas["score"], want["score"], "meta score")
        else:
            assert_values(combined[key], want, key)


def _post_config(case) -> PostprocessConfig:
    cfg = case["config"]
    fields = {k: v for k, v in cfg.items() if k in PostprocessConfig.__dataclass_fields__}
    fields.pop("advantages", None)
    adv_cfg = dict(cfg, think=cfg.get("think", True))
    return PostprocessConfig(**fields, advantages=_adv_config(adv_cfg, cfg["num_train_timesteps"]))


def _check_post(got, want):
    assert got.should_skip == want["should_skip"]
    assert set(got.rewards) == set(want["rewards"])
    for key, values in want["rewards"].items():
        assert_values(got.rewards[key], values, key)
    assert_values(got.result.advantages, want["advantages"], "advantages")
    assert_values(got.result.text_advantages, want["text_advantages"], "text_advantages")


@pytest.mark.parametrize("case", cases("t2i_reward_postprocess"), ids=lambda c: c["case_id"])
def test_t2i_reward_postprocess(case):
    for rank, want in enumerate(case["expected_per_rank"]):
        got = t2i_reward_postprocess(
            case["prompts"],
            case["dvreward"],
            case["think_texts"],
            _post_config(case),
            world_size=case["world_size"],
            rank=rank,
        )
        _check_post(got, want)


@pytest.mark.parametrize("case", cases("srr_reward_postprocess"), ids=lambda c: c["case_id"])
def test_srr_reward_postprocess(case):
    replies = case["reflective_judge_replies"] or {}
    for rank, want in enumerate(case["expected_per_rank"]):
        got = srr_reward_postprocess(
            case["prompts"],
            case["init_rewards"],
            case["refined_rewards"],
            case["think_texts"],
            _post_config(case),
            world_size=case["world_size"],
            rank=rank,
            judge=lambda text, temperature: replies[text],
            prompts_mean=case["prompts_mean"],
        )
        _check_post(got, want)

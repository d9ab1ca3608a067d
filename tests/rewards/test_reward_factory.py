"""One reward factory for every registered reward: judges required where declared, options checked before
any model loads, and the CLI's `score --reward` refusing both in one line."""

from __future__ import annotations

import pytest

from evalkit import registry
from evalkit.errors import EvalkitError
from evalkit.rewards.factory import build_reward

REWARDS = sorted(registry.REWARDS)


@pytest.mark.parametrize("name", REWARDS)
def test_every_registered_reward_has_a_builder(name):
    assert callable(registry.lookup("rewards", name).load())


@pytest.mark.parametrize("name", [n for n in REWARDS if registry.REWARDS[n].needs_judge])
def test_judged_rewards_refuse_to_start_without_a_judge(name):
    with pytest.raises(EvalkitError, match="computed by a judge"):
        build_reward(name)


@pytest.mark.parametrize("name", REWARDS)
def test_unknown_options_are_refused_before_loading(name):
    from judged_helpers import FakeJudge

    judge = FakeJudge([]) if registry.REWARDS[name].needs_judge else None
    with pytest.raises(EvalkitError, match=f"unknown {name} option 'no_such_option'"):
        build_reward(name, {"no_such_option": 1}, judge=judge)


def test_unknown_reward_suggests_the_closest():
    with pytest.raises(EvalkitError, match="did you mean 'hpsv3'"):
        build_reward("hpsv2")


def test_score_reward_refusals_are_one_line(cli, tmp_path):
    (tmp_path / "0.png").write_bytes(b"")
    (tmp_path / "p.txt").write_text("a cat\n")
    for args, expected in (
        (["--reward", "viescore"], "computed by a judge"),
        (["--reward", "brightness", "--reward-option", "gamma=2"], "unknown brightness option 'gamma'"),
    ):
        code, _, err = cli("score", tmp_path, *args, "--prompts", tmp_path / "p.txt")
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err

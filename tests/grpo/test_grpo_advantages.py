"""Per-prompt group advantages against the official PerPromptStatTracker outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT

from evalkit.grpo.advantages import (
    PerPromptStatTracker,
    batch_advantages,
    clip_advantages,
    group_advantages,
    informative_mask,
)

FIXTURES = FIXTURE_ROOT / "flow_grpo"
CASES_FILE = FIXTURES / "stat_tracker_cases.json"


def _cases() -> list[dict]:
    if not CASES_FILE.exists():
        return []
    return json.loads(CASES_FILE.read_text())["cases"]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["case_id"])
def test_stat_tracker_matches_official(case):
    tracker = PerPromptStatTracker(global_std=case["global_std"])
    for update, expected in zip(case["updates"], case["expected"]["advantages"], strict=True):
        if isinstance(expected, dict):
            exc_name = expected["exception"].split(":")[0]
            exc_type = {"AttributeError": AttributeError, "ValueError": ValueError}.get(exc_name, Exception)
            with pytest.raises(exc_type):
                tracker.update(update["prompts"], update["rewards"])
        else:
            got = tracker.update(update["prompts"], update["rewards"])
            np.testing.assert_allclose(got, np.asarray(expected), rtol=0, atol=1e-6)
        if case["clear_between_updates"]:
            tracker.clear()
    avg_group_size, n_prompts = tracker.get_stats()
    expected_avg, expected_n = case["expected"]["get_stats_after"]
    assert avg_group_size == pytest.approx(expected_avg, abs=1e-9)
    assert n_prompts == expected_n


def test_global_std_uses_whole_batch():
    prompts = ["a", "a", "b", "b"]
    rewards = np.array([1.0, 3.0, 10.0, 10.0])
    adv = group_advantages(prompts, rewards, global_std=True)
    std = rewards.std() + 1e-4
    np.testing.assert_allclose(adv, [-1 / std, 1 / std, 0.0, 0.0])
    local = group_advantages(prompts, rewards, global_std=False)
    np.testing.assert_allclose(local, [-1 / 1.0001, 1 / 1.0001, 0.0, 0.0])


def test_clear_keeps_prompt_history():
    tracker = PerPromptStatTracker()
    tracker.update(["a", "b"], [0.0, 1.0])
    tracker.clear()
    assert tracker.get_stats() == (0.0, 2)
    tracker.update(["c", "c"], [0.0, 1.0])
    assert tracker.get_stats() == (2.0, 3)


def test_clip_and_zero_variance_filter():
    adv = group_advantages(["a", "a", "b", "b", "c"], [0.0, 100.0, 5.0, 5.0, 1.0])
    np.testing.assert_array_equal(informative_mask(adv), [True, True, False, False, False])
    clipped = clip_advantages(np.array([-7.0, 0.5, 9.0]), 5.0)
    np.testing.assert_array_equal(clipped, [-5.0, 0.5, 5.0])
    np.testing.assert_array_equal(informative_mask(np.zeros((2, 3))), [False, False])


def test_batch_advantages_without_grouping():
    rewards = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(batch_advantages(rewards), (rewards - 1.0) / (rewards.std() + 1e-4))

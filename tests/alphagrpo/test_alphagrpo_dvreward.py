"""Protocol dvreward@alphagrpo against the official reward function (shared/fixtures/alphagrpo, `dvreward`).

Every case is replayed through a scripted judge built from the case's stored replies: the same requests must
go out (decoding parameters, number of calls) and the same scores, metas and exceptions come back. Both
behaviours are checked: compat="official" (0.0 after the retries) and evalkit's default (abstain).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from alphagrpo_fixtures import ROOT, cases
from fixture_paths import fixture_cases, need

from evalkit.dvreward.alphagrpo import ATTEMPTS, REQUEST, AlphaGRPODVReward, clean, multi_score

CASES = ROOT / "cases" / "dvreward.json"
WHAT = "AlphaGRPO dvreward fixture"
IMAGE = "data:image/png;base64,"  # the scripted judge ignores the image, as the official run's did


class ScriptedJudge:
    """Answers each question with the case's stored reply; {"raise": ...} raises like a failing call."""

    def __init__(self, replies: dict):
        self.replies = replies
        self.calls: Counter[str] = Counter()
        self.params: list[dict] = []

    def __call__(self, **request):
        question = request["messages"][-1]["content"][-1]["text"]
        self.calls[question] += 1
        self.params.append({k: v for k, v in request.items() if k != "messages"})
        reply = self.replies[question]
        if isinstance(reply, dict) and "raise" in reply:
            raise RuntimeError(reply["raise"])
        return reply


def _run(case: dict, compat: str):
    judge = ScriptedJudge(case["replies"])
    model = case["request_params_seen"].get("model", "judge")  # no call is made when none is seen
    urls = [IMAGE] * len(case["metadata"])
    if case["score_method"] is None and case["use_logprobs"] is None:  # README: else a direct call
        details, metas = multi_score(
            case["score_dict"], urls, case["metadata"], complete=judge, model=model, compat=compat
        )
        return judge, {"score_details": details, "score_metas": metas}
    reward = AlphaGRPODVReward(
        judge, model, method=case["score_method"], use_logprobs=case["use_logprobs"], compat=compat
    )
    scores, metas = reward(urls, case["metadata"])
    return judge, {"scores": scores, "metas": metas}


def _close(got, want, path="") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for key in want:
            _close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, bool):
        assert got is want, path
    else:
        assert got == pytest.approx(want, abs=1e-6), path


def _load(path):
    return json.loads(path.read_text())["cases"]


@pytest.mark.parametrize("case", fixture_cases(CASES, WHAT, _load, lambda c: c["case_id"]))
def test_official_compat_reproduces_the_official_reward(case):
    need(CASES, WHAT)
    expected = case["expected"]
    if "exception" in expected:
        with pytest.raises(Exception) as error:
            _run(case, "official")
        assert type(error.value).__name__ == expected["exception"]
        return
    judge, got = _run(case, "official")
    _close(got, {k: v for k, v in expected.items() if k != "call"})
    assert sum(judge.calls.values()) == case["n_judge_calls"]
    seen = case["request_params_seen"]
    assert all(params == seen for params in judge.params)
    assert {k: seen[k] for k in REQUEST} == REQUEST


@pytest.mark.parametrize("case", fixture_cases(CASES, WHAT, _load, lambda c: c["case_id"]))
def test_default_abstains_where_official_scores_zero(case):
    """evalkit's default: an unanswerable question makes its image abstain (None); the rest is unchanged."""
    need(CASES, WHAT)
    if "exception" in case["expected"]:
        with pytest.raises(ValueError):
            _run(case, "evalkit")
        return
    judge, got = _run(case, "evalkit")
    _, official = _run(case, "official")
    key = "score_details" if "score_details" in got else "scores"
    failed = {q for q, n in judge.calls.items() if n >= ATTEMPTS}  # stored replies never change
    for i, meta in enumerate(case["metadata"]):
        questions = {q["question"] if isinstance(q, dict) else q for k in meta for q in meta[k]}
        scores = got[key] if key == "scores" else got[key]["avg"]
        want = official[key] if key == "scores" else official[key]["avg"]
        assert scores[i] is None if questions & failed else scores[i] == pytest.approx(want[i], abs=1e-12)


def test_token_normalisation_is_the_official_one():
    """Lower-case, strip, drop . , ? ! anywhere; BPE space marks are not whitespace and stay."""
    for token, word in [
        ("Yes", "yes"),
        (" yes", "yes"),
        ("YES.", "yes"),
        ("no!", "no"),
        ("\tYes\n", "yes"),
        ("y.e.s", "yes"),
    ]:
        assert clean(token) == word
    for token in ["yeah", "y", "nope", "not", "\u0120yes", "\u2581yes"]:
        assert clean(token) not in ("yes", "no")


def test_every_case_family_is_read_from_the_files():
    if not CASES.exists():
        pytest.skip(f"{WHAT} not present")
    assert len(cases("dvreward")) == len(_load(CASES))

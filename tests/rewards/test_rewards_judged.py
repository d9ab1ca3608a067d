"""VIEScore and UnifiedReward on a scripted fake Judge (the Judge interface of evalkit/judges/base.py)."""

from __future__ import annotations

import json
import math

import pytest
from fixture_paths import FIXTURES as FIXTURE_ROOT
from PIL import Image

from evalkit.benchmarks.gedit.parse import min_score, parse_reply
from evalkit.judges.base import JudgeFailure
from evalkit.rewards.base import Scorer
from evalkit.rewards.unifiedreward import PROMPTS, UnifiedRewardScorer, parse_final_score
from evalkit.rewards.viescore import PQ_PROMPT, SC_PROMPT, VIEScoreScorer

GEDIT_PARSING = FIXTURE_ROOT / "gedit_bench" / "judge_reply_parsing.json"


class FakeJudge:
    """Replies from a script; records every request. A reply that is an exception instance is raised."""

    name = "fake"

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[tuple[list, dict]] = []

    def config(self):
        return {"model": "fake"}

    def yes_probability(self, image, questions):
        raise NotImplementedError

    def chat(self, messages, *, validate=None, **decoding):
        self.requests.append((messages, decoding))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


IMAGE = Image.new("RGB", (16, 16), (120, 30, 200))


def _parsing_cases() -> list[dict]:
    if not GEDIT_PARSING.exists():
        return []
    return json.loads(GEDIT_PARSING.read_text())["cases"]


@pytest.mark.parametrize("case", _parsing_cases(), ids=lambda c: c["case_id"])
def test_viescore_parser_matches_official_first_attempt(case):
    """The reward's strict parse accepts exactly the official parses whose score list is usable, with the
    official scores (no random give-up fallback); GEdit's default parse of the same reply is the official one."""
    expected = case["parse_first_attempt"]["result"]
    got = parse_reply(case["reply"], strict=True)
    official = parse_reply(case["reply"])
    if isinstance(expected, dict):
        assert official.ok and official.data == expected
        try:
            usable = min_score(expected, strict=True) is not None
        except ValueError:
            usable = False
        assert got.ok == usable
        if usable:
            assert got.data["score"] == expected["score"]
    else:  # False (unparseable) or the rate-limit sentinel: we abstain
        assert not got.ok
    status = case["vie_evaluate_with_fixed_pq"]["status"]
    fixed_pq = json.dumps({"score": [7, 8], "reasoning": "ok"})
    replies = [case["reply"], fixed_pq] if got.ok else [case["reply"], case["reply"]]
    scorer = VIEScoreScorer(FakeJudge(replies))
    result = scorer.evaluate(IMAGE, "a cat")
    if status == "ok":
        expected_eval = case["vie_evaluate_with_fixed_pq"]
        assert result["SC"] == expected_eval["SC"] and result["PQ"] == expected_eval["PQ"]
        assert result["O"] == pytest.approx(expected_eval["O"], abs=1e-6)
    else:  # random fallback / endless retry / exception officially: abstain here
        assert result["O"] is None


def test_viescore_prompts_and_formula():
    judge = FakeJudge(
        ['{"score": [6], "reasoning": "ok"}', '||V^=^V||{"score": [9, 4], "reasoning": "x"}||V^=^V||']
    )
    scorer = VIEScoreScorer(judge)
    assert isinstance(scorer, Scorer)
    assert scorer.score([IMAGE], ["a red cat"], [{}]) == [pytest.approx(math.sqrt(6 * 4))]
    sc_messages, pq_messages = judge.requests[0][0], judge.requests[1][0]
    assert sc_messages[0]["content"][0] == {"type": "image", "image": IMAGE}
    sc_text = sc_messages[0]["content"][1]["text"]
    assert sc_text == SC_PROMPT.replace("<prompt>", "a red cat")
    assert sc_text.startswith("You are a professional digital artist.")
    assert "Text Prompt: a red cat\n" in sc_text and "output score = [score]" in sc_text
    assert pq_messages[0]["content"][1]["text"] == PQ_PROMPT and "[naturalness, artifacts]" in PQ_PROMPT


def test_viescore_never_guesses_a_score():
    # Unparseable twice (the official code would draw random.randint(0, 10) here) -> abstain.
    judge = FakeJudge(["I cannot rate this.", "Still no.", '{"score": [5, 5]}'])
    scorer = VIEScoreScorer(judge)
    assert scorer.score([IMAGE], ["a cat"], [{}]) == [None]
    assert len(scorer.failures) == 2
    # One bad reply then a good one: the re-ask is used, like the official single retry.
    judge = FakeJudge(["nope", '{"score": [8]}', '{"score": [6, 9]}'])
    assert VIEScoreScorer(judge).score([IMAGE], ["a cat"], [{}]) == [pytest.approx(math.sqrt(8 * 6))]
    # Judge transport failure, string scores and negative scores abstain.
    assert VIEScoreScorer(FakeJudge([JudgeFailure("timeout")])).score([IMAGE], ["x"], [{}]) == [None]
    for unusable in (
        '{"score": ["8", 9]}',
        '{"score": [-1, 5]}',
        '{"score": []}',
        '{"score": [Infinity, 5]}',
    ):
        assert not parse_reply(unusable, strict=True).ok
    assert parse_reply('{"score": [Infinity, 5]}').ok  # the official parse accepts it (and its sqrt)
    assert min_score(parse_reply('{"score": [3.5, 7]}', strict=True).data) == 3.5


def test_viescore_components():
    judge = FakeJudge(['{"score": [4]}'])
    assert VIEScoreScorer(judge, component="SC").score([IMAGE], ["a cat"], [{}]) == [4.0]
    assert len(judge.requests) == 1  # PQ is not asked when only SC is wanted


def test_unifiedreward_parses_final_score_and_normalises():
    judge = FakeJudge(
        [
            "cat (object): 1\nFinal Score: 4",
            "Alignment good.\nFinal Score: 3.5",
            "The image is fine.",  # no score -> abstain (Flow-GRPO would use 0.0)
            JudgeFailure("server error"),
        ]
    )
    scorer = UnifiedRewardScorer(judge)
    assert isinstance(scorer, Scorer)
    scores = scorer.score([IMAGE] * 4, ["a cat", "a dog", "a car", "a cow"], [{}] * 4)
    assert scores == [pytest.approx(0.8), pytest.approx(0.7), None, None]
    text = judge.requests[0][0][0]["content"][1]["text"]
    assert text == PROMPTS["official"].format(prompt="a cat") and text.endswith("Text Caption: [a cat]")
    assert judge.requests[0][1] == {}


def test_unifiedreward_flow_grpo_variant():
    judge = FakeJudge(["Final Score: 5"])
    scorer = UnifiedRewardScorer(judge, prompt="flow_grpo", normalize=False)
    assert scorer.score([IMAGE], ["a cat"], [{}]) == [5.0]
    messages, decoding = judge.requests[0]
    assert decoding == {"temperature": 0.0}
    assert messages[0]["content"][0]["image"].size == (512, 512)
    assert messages[0]["content"][1]["text"].startswith("<image>\nYou are given a text caption")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Final Score: 2", 2.0),
        ("Final Score:4.25 overall", 4.25),
        ("Final Score: 7", None),
        ("final score: 3", None),
        ("Final Score: 0", None),
        ("Score: 3", None),
    ],
)
def test_final_score_regex(reply, expected):
    assert parse_final_score(reply) == expected


def test_judged_rewards_run_on_the_tiny_judge_backend():
    """The real Judge stack (evalkit.judges, tiny random Qwen2-VL): random replies must abstain, not score."""
    from evalkit.rewards.factory import build_reward

    scorer = build_reward("unifiedreward", {"judge": "tiny"})
    (value,) = scorer.score([IMAGE], ["a cat"], [{}])
    assert value is None or 0.2 <= value <= 1.0
    assert value is not None or scorer.failures


def test_viescore_normalize_divides_by_ten():
    judge = FakeJudge(['{"score": [9]}', '{"score": [4, 9]}'])
    assert VIEScoreScorer(judge, normalize=True).score([IMAGE], ["a cat"], [{}]) == [pytest.approx(0.6)]


def test_unifiedreward_and_dvreward_text_answers_hand_the_judge_a_validator():
    """A reply the reward cannot parse must not be cached (a re-ask is then a real request): the judge
    gets a `validate` that rejects exactly the unparseable replies."""
    from evalkit.dvreward.verify import _ask_text

    seen = []

    class Recording(FakeJudge):
        def chat(self, messages, *, validate=None, **decoding):
            seen.append(validate)
            return super().chat(messages, validate=validate, **decoding)

    UnifiedRewardScorer(Recording(["Final Score: 4"])).score([IMAGE], ["a cat"], [{}])
    _ask_text(Recording(["Yes."]), IMAGE, "Is there a cat?")
    unified, yes_no = seen
    unified("Final Score: 4")
    yes_no("Yes.")
    with pytest.raises(ValueError):
        unified("The image is fine.")
    with pytest.raises(ValueError):
        yes_no("Banana bread.")

"""DVReward: the AlphaGRPO JSONL format, aggregation on hand-computed cases, fallbacks, FPR, the Scorer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from evalkit.dvreward import (
    Decomposition,
    Question,
    aggregate,
    index_by_prompt,
    read_jsonl,
    rectify,
    verify,
    write_jsonl,
)
from evalkit.errors import DataError
from evalkit.judges.base import JudgeFailure, YesNoAnswer
from evalkit.rewards.dvreward import DVReward, decomposition_from_metadata

# A line as AlphaGRPO's scripts/decompose.py writes it (original_index added by its driver).
ALPHAGRPO_LINE = {
    "prompt": "two red apples on a wooden table",
    "semantic_questions": [
        {"question_type": "semantic", "question": "Are there apples?", "is_valid": True, "tag": "Existence"},
        {"question_type": "semantic", "question": "Are there two apples?", "is_valid": True, "tag": "Count"},
        {
            "question_type": "semantic",
            "question": "Are the apples red?",
            "is_valid": True,
            "tag": "Attribute",
        },
        {"question_type": "semantic", "question": "Is it sunny?", "is_valid": False, "tag": "Environment"},
    ],
    "quality_questions": [
        {
            "question_type": "quality",
            "question": "Do the apples look round?",
            "is_valid": True,
            "tag": "Geometry",
        },
        {
            "question_type": "quality",
            "question": "Is the wood grain real?",
            "is_valid": True,
            "tag": "Texture",
        },
    ],
    "original_index": 7,
}


def image(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8))


class ScriptedJudge:
    """A judge double: per-question answers from a table (a float, "text:yes", or a failure reason)."""

    name = "scripted"

    def __init__(self, table: dict[str, object], chat_reply: str | None = None):
        self.table = table
        self.chat_reply = chat_reply
        self.chats: list = []

    def config(self):
        return {"model": "scripted", "snapshot": "s1"}

    def answer_yes_no(self, image, questions):
        answers = []
        for q in questions:
            value = self.table[q]
            if isinstance(value, float):
                answers.append(YesNoAnswer(value, "logprobs", "s1"))
            elif isinstance(value, str) and value.startswith("text:"):
                answers.append(YesNoAnswer(1.0 if value == "text:yes" else 0.0, "text", "s1"))
            else:
                answers.append(JudgeFailure(str(value)))
        return answers

    def yes_probability(self, image, questions):
        raise NotImplementedError

    def chat(self, messages, *, validate=None, **decoding):
        self.chats.append((messages, decoding))
        if self.chat_reply is None:
            raise JudgeFailure("server down")
        return self.chat_reply


def decomposition() -> Decomposition:
    return Decomposition.from_dict(json.loads(json.dumps(ALPHAGRPO_LINE)))


# ------------------------------------------------------------------------------------------ format
def test_alphagrpo_jsonl_round_trip_is_byte_identical(tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    second = dict(ALPHAGRPO_LINE, prompt="a cat", original_index=8)
    source.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in (ALPHAGRPO_LINE, second)))
    items = read_jsonl(source)
    assert [d.prompt for d in items] == ["two red apples on a wooden table", "a cat"]
    assert items[0].extra == {"original_index": 7}
    assert [q.tag for q in items[0].valid_semantic()] == ["Existence", "Count", "Attribute"]
    assert items[0].quality_questions[1] == Question("Is the wood grain real?", "quality", "Texture", True)
    copy = tmp_path / "out.jsonl"
    write_jsonl(copy, items)
    assert copy.read_text() == source.read_text()
    assert read_jsonl(copy)[1].to_dict() == second


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("quality_questions"), "quality_questions"),
        (lambda d: d["semantic_questions"][0].pop("tag"), "lacks tag"),
        (lambda d: d["semantic_questions"][0].update(is_valid="yes"), "is_valid"),
        (lambda d: d["quality_questions"][0].update(question_type="semantic"), "question_type"),
        (lambda d: d["semantic_questions"][1].update(question=""), "non-empty"),
    ],
)
def test_malformed_lines_are_errors_with_line_numbers(tmp_path, mutate, message) -> None:
    bad = json.loads(json.dumps(ALPHAGRPO_LINE))
    mutate(bad)
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(ALPHAGRPO_LINE) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=rf"q.jsonl:2: .*{message}"):
        read_jsonl(path)


def test_a_prompt_listed_twice_with_other_questions_is_refused() -> None:
    one = decomposition()
    other = Decomposition(one.prompt, one.semantic_questions[:1], [])
    assert index_by_prompt([one, decomposition()])[one.prompt] is one
    with pytest.raises(DataError, match="twice"):
        index_by_prompt([one, other])


# ------------------------------------------------------------------------------------------ aggregation
def test_aggregation_formulas_on_a_hand_computed_case() -> None:
    semantic, quality = [1.0, 0.5], [0.2, 0.6, 0.4]
    reward, sc, pq = aggregate(semantic, quality, "geometric")
    assert (sc, pq) == pytest.approx((0.75, 0.4))
    assert reward == pytest.approx(math.sqrt(0.3))
    assert aggregate(semantic, quality, "mean")[0] == pytest.approx(0.575)
    # binary: 0.5 counts as yes -> SC = 1, PQ = 1/3
    assert aggregate(semantic, quality, "binary") == pytest.approx((math.sqrt(1 / 3), 1.0, 1 / 3))
    assert aggregate([], [0.25], "geometric") == pytest.approx((0.5, 1.0, 0.25))  # empty list counts as 1
    with pytest.raises(ValueError, match="unknown"):
        aggregate([1.0], [1.0], "sum")


def test_verify_uses_valid_questions_only_and_keeps_per_question_details() -> None:
    table = {
        "Are there apples?": 0.9,
        "Are there two apples?": 0.6,
        "Are the apples red?": 0.3,
        "Do the apples look round?": 0.8,
        "Is the wood grain real?": 0.4,
    }  # "Is it sunny?" is invalid: asking it would raise KeyError
    result = verify(ScriptedJudge(table), image(), decomposition())
    assert result.sc == pytest.approx(0.6) and result.pq == pytest.approx(0.6)
    assert result.reward == pytest.approx(0.6) and result.failure is None
    details = result.to_dict()
    assert [q["question"] for q in details["questions"]] == list(table)
    assert details["questions"][2] == {
        "question": "Are the apples red?",
        "question_type": "semantic",
        "tag": "Attribute",
        "score": 0.3,
        "source": "logprobs",
        "failure": None,
        "cached": False,
    }


def test_a_decoded_answer_is_used_and_recorded_when_there_are_no_logprobs() -> None:
    table = {q: 0.5 for q in ("Are there apples?", "Are there two apples?", "Do the apples look round?")}
    table |= {"Are the apples red?": "text:no", "Is the wood grain real?": "text:yes"}
    result = verify(ScriptedJudge(table), image(), decomposition())
    sources = {q.question: (q.score, q.source) for q in result.questions}
    assert sources["Are the apples red?"] == (0.0, "text")
    assert sources["Is the wood grain real?"] == (1.0, "text")
    assert result.n_text_fallback == 2
    assert result.sc == pytest.approx(1 / 3) and result.pq == pytest.approx(0.75)


def test_a_failed_question_is_asked_again_for_a_plain_answer() -> None:
    table = {
        q["question"]: 0.5 for q in ALPHAGRPO_LINE["semantic_questions"] + ALPHAGRPO_LINE["quality_questions"]
    }
    table["Are the apples red?"] = "no yes/no token among the top 5 logprobs"
    judge = ScriptedJudge(table, chat_reply="Yes.")
    result = verify(judge, image(), decomposition())
    red = next(q for q in result.questions if q.question == "Are the apples red?")
    assert (red.score, red.source) == (1.0, "text")
    ((messages, decoding),) = judge.chats
    assert messages[0]["content"][1]["text"] == "Are the apples red?" and decoding["temperature"] == 0.0
    assert result.reward == pytest.approx(math.sqrt((0.5 + 0.5 + 1.0) / 3 * 0.5))


def test_an_unanswered_question_makes_the_image_abstain_never_zero() -> None:
    table = {
        q["question"]: 0.9 for q in ALPHAGRPO_LINE["semantic_questions"] + ALPHAGRPO_LINE["quality_questions"]
    }
    table["Is the wood grain real?"] = "http 500"
    result = verify(ScriptedJudge(table), image(), decomposition(), text_fallback=True)
    assert result.reward is None and result.n_failed == 1
    assert "1/5 questions unanswered" in result.failure and "server down" in result.failure
    partial = verify(ScriptedJudge(table), image(), decomposition(), allow_partial=True)
    assert partial.reward == pytest.approx(0.9)
    table["Do the apples look round?"] = "http 500"  # no quality question left: PQ would read 1.0
    assert verify(ScriptedJudge(table), image(), decomposition(), allow_partial=True).reward is None
    assert (
        verify(ScriptedJudge({}), image(), Decomposition("x", [], [])).failure
        == "no valid questions for this prompt"
    )


# ------------------------------------------------------------------------------------------ FPR
def test_fpr_gives_non_improving_refinements_the_group_floor() -> None:
    initial = [0.6, 0.6, 0.6, 0.2, 0.2, 0.4]
    refined = [0.7, 0.6, 0.5, 0.1, 0.9, None]
    groups = ["a", "a", "a", "b", "b", "b"]
    result = rectify(initial, refined, groups)
    assert result.rewards == [0.7, 0.6, 0.6, 0.2, 0.9, None]
    assert result.rectified == [False, True, True, True, False, False]
    assert not result.skip_round
    assert rectify([0.5, 0.3], [0.5, 0.1]).rewards == [0.3, 0.3]  # one group: floor = min initial = 0.3
    assert rectify([0.5, 0.3], [0.5, 0.1]).skip_round  # nothing improved: the round carries no signal
    assert not rectify([None], [0.4]).skip_round and rectify([None], [0.4]).rewards == [0.4]
    with pytest.raises(ValueError):
        rectify([0.1], [0.2, 0.3])


# ------------------------------------------------------------------------------------------ Scorer
def test_dvreward_scorer_finds_questions_in_metadata_or_file_and_abstains_without(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    write_jsonl(path, [decomposition()])
    table = {
        q["question"]: 0.64
        for q in ALPHAGRPO_LINE["semantic_questions"] + ALPHAGRPO_LINE["quality_questions"]
    }
    table["Is it a cat?"] = 0.25
    scorer = DVReward(ScriptedJudge(table), questions=path)
    own = {
        "semantic_questions": [
            {"question_type": "semantic", "question": "Is it a cat?", "is_valid": True, "tag": "Existence"}
        ]
    }
    prompts = [ALPHAGRPO_LINE["prompt"], "unknown prompt", "a cat", "bad"]
    metadata = [{}, {}, own, {"dvreward": {"semantic_questions": "oops", "quality_questions": []}}]
    scores = scorer.score([image()] * 4, prompts, metadata)
    assert scores[0] == pytest.approx(0.64) and scores[1] is None and scores[3] is None
    assert scores[2] == pytest.approx(0.5)  # sqrt(0.25 * 1.0): no quality questions
    concurrent = DVReward(ScriptedJudge(table), questions=path, workers=3)
    assert concurrent.score([image()] * 4, prompts, metadata) == scores  # same order, same values
    details = scorer.score_with_details([image()], ["unknown prompt"], [{}])
    assert details[0] == (None, details[0][1]) and details[0][1]["failure"] == "no questions for this prompt"
    assert decomposition_from_metadata("p", {}) is None
    assert scorer.config()["questions"] == str(path) and scorer.name == "dvreward"


class PlainJudge:
    """A judge with only the basic interface: yes_probability (all or nothing) and chat."""

    name = "plain"

    def __init__(self, values: list[float] | None):
        self.values = values

    def config(self):
        return {"model": "plain", "snapshot": None}

    def yes_probability(self, image, questions):
        if self.values is None:
            raise JudgeFailure("this server returns no logprobs")
        return self.values[: len(questions)]

    def chat(self, messages, *, validate=None, **decoding):
        return "No, it is not."


def test_a_basic_judge_is_used_through_yes_probability_or_its_decoded_answers() -> None:
    table = Decomposition(
        "p", [Question("Is it red?", "semantic", "Attribute")], [Question("Sharp?", "quality", "Texture")]
    )
    result = verify(PlainJudge([0.81, 0.25]), image(), table)
    assert [q.source for q in result.questions] == ["logprobs", "logprobs"]
    assert result.reward == pytest.approx(math.sqrt(0.81 * 0.25))
    fallback = verify(PlainJudge(None), image(), table)
    assert [(q.score, q.source) for q in fallback.questions] == [(0.0, "text"), (0.0, "text")]
    assert fallback.reward == 0.0  # real "no" answers: a genuine 0, not a failure
    assert verify(PlainJudge(None), image(), table, text_fallback=False).reward is None

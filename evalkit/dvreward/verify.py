"""Verify an image against its decomposition with an MLLM judge and aggregate the answers into DVReward.

Per question, s = P(yes) / (P(yes) + P(no)) from the judge's first-token log-probabilities (the judges sum
the Yes/No spellings case- and punctuation-insensitively). When the judge has no usable log-probs for a
question, the decoded answer is used (s = 1 for "yes", 0 for "no") and the question says `source="text"`.
SC and PQ are the means over the valid semantic and the quality questions (1.0 for an empty list, as in
AlphaGRPO), and the reward is:

    geometric (default)  sqrt(SC * PQ)
    mean                 (SC + PQ) / 2
    binary               sqrt(SC * PQ) with every s rounded to 0/1 (s >= 0.5 counts as yes)

A question the judge could not answer makes the whole image abstain (reward None) unless `allow_partial`;
a failure never becomes a 0. With a local judge, `answer_yes_no` runs the image + instruction prefix once
and batches all questions of the image on its KV cache.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from evalkit.dvreward.format import Decomposition, Question
from evalkit.judges.base import Judge, JudgeFailure, YesNoAnswer, parse_yes_no
from evalkit.judges.base import ask as ask_judge

METHODS = ("geometric", "mean", "binary")

# The judge's system prompt in AlphaGRPO's online DVReward (alpha_grpo/rewards/rewards.py), kept exact: it is
# part of the protocol. Pass it as the judge's `system_prompt` when building the judge.
VERIFIER_SYSTEM_PROMPT = (
    "You are an expert visual auditor. Your task is to strictly evaluate an AI-generated image against a "
    "specific question. Answer only with 'yes' or 'no'. Do not give other outputs or punctuation marks. If "
    "the subjects in the question don't exist, answer 'no'."
)


@dataclass(frozen=True)
class QuestionScore:
    """One verified question: `score` is s in [0, 1], or None with `failure` set."""

    question: str
    question_type: str
    tag: str
    score: float | None
    source: str | None = None  # "logprobs" | "text" (decoded answer) | None (failed)
    failure: str | None = None
    cached: bool = False


@dataclass(frozen=True)
class Verification:
    """The reward of one image and how it was obtained."""

    reward: float | None
    sc: float | None
    pq: float | None
    method: str
    questions: tuple[QuestionScore, ...]
    failure: str | None = None

    @property
    def n_failed(self) -> int:
        return sum(q.score is None for q in self.questions)

    @property
    def n_text_fallback(self) -> int:
        return sum(q.source == "text" for q in self.questions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "sc": self.sc,
            "pq": self.pq,
            "method": self.method,
            "failure": self.failure,
            "n_failed": self.n_failed,
            "n_text_fallback": self.n_text_fallback,
            "questions": [asdict(q) for q in self.questions],
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 1.0


def aggregate(
    semantic: list[float], quality: list[float], method: str = "geometric"
) -> tuple[float, float, float]:
    """(reward, SC, PQ) from per-question scores."""
    if method not in METHODS:
        raise ValueError(f"unknown DVReward method {method!r}; known: {', '.join(METHODS)}")
    if method == "binary":
        semantic = [1.0 if s >= 0.5 else 0.0 for s in semantic]
        quality = [1.0 if s >= 0.5 else 0.0 for s in quality]
    sc, pq = _mean(semantic), _mean(quality)
    reward = (sc + pq) / 2 if method == "mean" else math.sqrt(sc * pq)
    return reward, sc, pq


def _require_yes_no(text: str) -> None:
    if parse_yes_no(text) is None:
        raise ValueError("neither yes nor no")


def _ask_text(judge: Judge, image: Image.Image, question: str) -> YesNoAnswer:
    """The decoded answer to one question (no log-probs): s = 1 for yes, 0 for no. Raises JudgeFailure."""
    message = {
        "role": "user",
        "content": [{"type": "image", "image": image}, {"type": "text", "text": question}],
    }
    # an unparseable reply is not cached, so asking again reaches the judge again
    text = ask_judge(judge, [message], _require_yes_no, temperature=0.0, max_tokens=10)
    word = parse_yes_no(text)
    if word is None:
        raise JudgeFailure(f"unparseable yes/no reply: {text[:80]!r}")
    return YesNoAnswer(1.0 if word == "yes" else 0.0, "text", str(judge.config().get("snapshot")))


def ask(
    judge: Judge, image: Image.Image, questions: list[str], text_fallback: bool = True
) -> list[YesNoAnswer | JudgeFailure]:
    """One answer or failure per question: per-question answers when the judge gives them, else the batch.

    With `text_fallback`, a question without usable log-probs is asked again for a plain answer.
    """
    if not questions:
        return []
    if hasattr(judge, "answer_yes_no"):
        answers: list[YesNoAnswer | JudgeFailure] = list(judge.answer_yes_no(image, questions))
    else:
        try:
            values = judge.yes_probability(image, questions)
            snapshot = str(judge.config().get("snapshot"))
            answers = [YesNoAnswer(v, "logprobs", snapshot) for v in values]
        except JudgeFailure as failure:
            answers = [failure] * len(questions)
    if not text_fallback:
        return answers
    for index, answer in enumerate(answers):
        if isinstance(answer, JudgeFailure):
            try:
                answers[index] = _ask_text(judge, image, questions[index])
            except JudgeFailure as failure:
                answers[index] = JudgeFailure(f"{answer.reason}; text fallback: {failure.reason}")
    return answers


def _score_of(question: Question, answer: YesNoAnswer | JudgeFailure) -> QuestionScore:
    if isinstance(answer, JudgeFailure):
        return QuestionScore(
            question.question, question.question_type, question.tag, None, failure=answer.reason
        )
    return QuestionScore(
        question.question,
        question.question_type,
        question.tag,
        float(answer.p_yes),
        answer.source,
        None,
        answer.cached,
    )


def verify(
    judge: Judge,
    image: Image.Image,
    decomposition: Decomposition,
    *,
    method: str = "geometric",
    allow_partial: bool = False,
    text_fallback: bool = True,
) -> Verification:
    """DVReward of one image; never raises JudgeFailure (a failure is in the result)."""
    if method not in METHODS:
        raise ValueError(f"unknown DVReward method {method!r}; known: {', '.join(METHODS)}")
    questions = decomposition.valid_semantic() + decomposition.valid_quality()
    if not questions:
        return Verification(None, None, None, method, (), "no valid questions for this prompt")
    answers = ask(judge, image, [q.question for q in questions], text_fallback)
    scores = tuple(_score_of(q, a) for q, a in zip(questions, answers, strict=True))
    failed = [s for s in scores if s.score is None]
    if failed and (not allow_partial or len(failed) == len(scores)):
        reason = f"{len(failed)}/{len(scores)} questions unanswered (first: {failed[0].failure})"
        return Verification(None, None, None, method, scores, reason)
    semantic = [s.score for s in scores if s.question_type == "semantic" and s.score is not None]
    quality = [s.score for s in scores if s.question_type == "quality" and s.score is not None]
    for kind, answered in (("semantic", semantic), ("quality", quality)):
        if not answered and any(s.question_type == kind for s in scores):  # an empty mean would read as 1.0
            return Verification(None, None, None, method, scores, f"no {kind} question answered")
    reward, sc, pq = aggregate(semantic, quality, method)  # type: ignore[arg-type]
    return Verification(reward, sc, pq, method, scores)

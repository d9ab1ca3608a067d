"""Protocol ``dvreward@alphagrpo``: DVReward scored as AlphaGRPO's online reward function scores it.

Source: JunyiWuCode/AlphaGRPO @ 1f604fffe62f1b7b0cb8ece8d34ef910f8a6d4b1, ``alpha_grpo/rewards/rewards.py``
(``decompositional_verifiable_reward``, ``multi_score``); checked on ../shared/fixtures/alphagrpo (family
``dvreward``). Per question one chat completion (the auditor system prompt, the image, the question) with
temperature 0.0, top_p 0.9, max_tokens 10 and the top-5 log-probs of each generated token. The question's
score comes from the **first** generated token's top-5 list: every candidate is lower-cased, stripped and
loses its ``. , ? !`` characters; ``exp(logprob)`` of exact ``yes`` / ``no`` candidates add up to P(yes) / P(no)
and the score is P(yes) / (P(yes) + P(no)). With neither (or both underflowing to 0) the reply text, cleaned
the same way, decides: exactly ``yes`` -> 1.0, anything else 0.0. SC and PQ are the means over the semantic
and quality questions; the reward is sqrt(SC * PQ) (``geometric``), (SC + PQ) / 2 (``mean``) or the mean over
all questions pooled (``sum_mean``). ``dvreward_binary`` scores the cleaned reply text only.

Where evalkit differs by default (``compat="evalkit"``): a question whose reply cannot be parsed after the
official 10 attempts makes the image **abstain** (reward ``None``) instead of scoring 0.0 like a confident
"no", and an empty question list is a ValueError instead of the official IndexError. ``compat="official"``
restores both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from evalkit.dvreward.verify import VERIFIER_SYSTEM_PROMPT

PROTOCOL = "dvreward@alphagrpo"
SOURCE = "JunyiWuCode/AlphaGRPO@1f604fffe62f1b7b0cb8ece8d34ef910f8a6d4b1:alpha_grpo/rewards/rewards.py"
# Decoding of every judge request, as the official reward function sends it.
REQUEST = {"max_tokens": 10, "temperature": 0.0, "top_p": 0.9, "logprobs": True, "top_logprobs": 5}
ATTEMPTS = 10  # calls per question before the official code gives up (and scores 0.0)
METHODS = ("geometric", "mean", "sum_mean")
_PUNCTUATION = str.maketrans("", "", ".,?!")

Compat = Literal["evalkit", "official"]
# A judge call: the request keyword arguments -> the chat-completion reply as a JSON dict (or string).
Complete = Callable[..., Mapping[str, Any] | str]


class ReplyError(ValueError):
    """A reply the official parser cannot use (no logprobs, empty content, no text)."""


def clean(token: str) -> str:
    """The official token/text normalisation: lower-case, strip, delete '.', ',', '?', '!'."""
    return token.lower().strip().translate(_PUNCTUATION)


def _reply(raw: Mapping[str, Any] | str) -> Mapping[str, Any]:
    return json.loads(raw) if isinstance(raw, str) else raw


def reply_text(raw: Mapping[str, Any] | str) -> str:
    text = _reply(raw)["choices"][0]["message"]["content"]
    if not isinstance(text, str):
        raise ReplyError("reply has no text content")
    return text


def question_score(raw: Mapping[str, Any] | str) -> float:
    """P(yes) / (P(yes) + P(no)) of the first token's top-5; the reply text when neither is there."""
    choice = _reply(raw)["choices"][0]
    logprobs = choice.get("logprobs")
    if not logprobs or not logprobs.get("content"):
        raise ReplyError("reply has no logprobs for its first token")
    text = reply_text(raw)  # the official parser reads it first: a None content fails even with logprobs
    p_yes = p_no = 0.0
    for candidate in logprobs["content"][0].get("top_logprobs") or []:
        word = clean(candidate["token"])
        if word == "yes":
            p_yes += math.exp(candidate["logprob"])
        elif word == "no":
            p_no += math.exp(candidate["logprob"])
    if p_yes + p_no > 0:
        return p_yes / (p_yes + p_no)
    return 1.0 if clean(text) == "yes" else 0.0


def binary_score(raw: Mapping[str, Any] | str) -> bool:
    """``dvreward_binary``: the cleaned reply text is exactly 'yes'."""
    return clean(reply_text(raw)) == "yes"


def request(question: str, image_url: str, model: str) -> dict[str, Any]:
    """The keyword arguments of one official judge call."""
    messages = [
        {"role": "system", "content": VERIFIER_SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": question},
            ],
        },
    ]
    return {"model": model, "messages": messages, **REQUEST}


def _question_text(question: Mapping[str, Any] | str) -> str:
    return question["question"] if isinstance(question, Mapping) else question


@dataclass
class AlphaGRPODVReward:
    """The official reward function over a judge call `complete(**request) -> reply JSON`."""

    complete: Complete
    model: str
    method: str = "geometric"
    use_logprobs: bool = True
    compat: Compat = "evalkit"
    attempts: int = ATTEMPTS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown DVReward method {self.method!r}; known: {', '.join(METHODS)}")
        if self.compat not in ("evalkit", "official"):
            raise ValueError(f"compat must be 'evalkit' or 'official', got {self.compat!r}")

    def ask(self, question: str, image_url: str) -> float | bool | None:
        """One question's score; after `attempts` unusable replies 0.0 (official) or None (abstain)."""
        parse = question_score if self.use_logprobs else binary_score
        for _ in range(self.attempts):
            try:
                return parse(self.complete(**request(question, image_url, self.model)))
            except Exception:  # noqa: BLE001 - the official loop retries on any error, judge errors included
                continue
        return 0.0 if self.compat == "official" else None

    def score_one(self, image_url: str, metadata: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
        """(reward, meta) of one image; meta has the official keys (semantic_score, ..., overall_score)."""
        semantic_q = list(metadata.get("semantic_questions", []))
        quality_q = list(metadata.get("quality_questions", []))
        if not semantic_q or not quality_q:
            if self.compat == "official":
                raise IndexError("list index out of range")  # what the official code raises
            raise ValueError("DVReward needs at least one semantic and one quality question per image")
        semantic = [self.ask(_question_text(q), image_url) for q in semantic_q]
        quality = [self.ask(_question_text(q), image_url) for q in quality_q]
        if any(s is None for s in semantic + quality):
            failed = sum(s is None for s in semantic + quality)
            return None, {"failure": f"{failed} question(s) unanswered after {self.attempts} attempts"}
        sc, pq = sum(semantic) / len(semantic), sum(quality) / len(quality)
        if self.method == "geometric":
            reward = math.sqrt(sc * pq)
        elif self.method == "mean":
            reward = 0.5 * sc + 0.5 * pq
        else:
            pooled = semantic + quality
            reward = sum(pooled) / len(pooled)
        meta = {"semantic_score": sc, "semantic_scores": semantic, "quality_score": pq,
                "quality_scores": quality, "overall_score": reward}  # fmt: skip
        return reward, meta

    def __call__(self, image_urls: list[str], metadata: list[Mapping[str, Any]]) -> tuple[list, list[dict]]:
        results = [self.score_one(url, meta) for url, meta in zip(image_urls, metadata, strict=True)]
        return [r for r, _ in results], [m for _, m in results]


SCORERS = {"dvreward": {"use_logprobs": True}, "dvreward_binary": {"use_logprobs": False}}


def multi_score(
    score_dict: Mapping[str, float], image_urls: list[str], metadata: list[Mapping[str, Any]], **reward: Any
) -> tuple[dict[str, list], dict[str, list]]:
    """The official ``multi_score``: each scorer's list, and ``avg`` = the weighted **sum** of them."""
    details: dict[str, list] = {}
    metas: dict[str, list] = {}
    for name, weight in score_dict.items():
        if name not in SCORERS:
            raise ValueError(f"unknown AlphaGRPO reward {name!r}; known: {', '.join(SCORERS)}")
        scores, per_image = AlphaGRPODVReward(**reward, **SCORERS[name])(image_urls, metadata)
        details[name] = scores
        for meta in per_image:
            for key, value in meta.items():
                metas.setdefault(key, []).append(value)
        weighted = [None if s is None else weight * s for s in scores]
        previous = details.get("avg", [0.0] * len(scores))
        details["avg"] = [
            None if a is None or w is None else a + w for a, w in zip(previous, weighted, strict=True)
        ]
    details["avg"] = details.pop("avg")
    return details, metas

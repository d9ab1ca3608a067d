"""The Judge interface used by every judge-scored benchmark and reward."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from PIL import Image

from evalkit.judges.cache import ReplyCache, cache_key
from evalkit.judges.messages import image_sha256, messages_fingerprint, with_system


class JudgeFailure(Exception):
    """A judge call that produced no usable answer (transport error, refusal, unparseable reply).

    Callers record `reason` on the sample and count it; a failure is never turned into a score.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UnparseableReply(JudgeFailure):
    """A reply the caller's `validate` rejected. It is never cached, so asking again is a real request."""

    def __init__(self, reason: str, text: str):
        super().__init__(reason)
        self.text = text


def ask(judge: Judge, messages: list[dict[str, Any]], validate: Callable[[str], Any], **decoding: Any) -> str:
    """`judge.chat` with a parser: the reply text, parseable or not. A reply `validate` rejects (by
    raising ValueError) is returned but not cached, so the caller's re-ask reaches the judge again instead
    of being served the same unparseable reply from the cache. Raises JudgeFailure for transport errors."""
    try:
        return judge.chat(messages, validate=validate, **decoding)
    except UnparseableReply as reply:
        return reply.text


@runtime_checkable
class Judge(Protocol):
    """Messages use the OpenAI chat layout; an image part is {"type": "image", "image": PIL.Image}."""

    name: str

    def config(self) -> dict[str, Any]:
        """Model id, snapshot and decoding parameters (never secrets); recorded in run.json."""
        ...

    def yes_probability(self, image: Image.Image, questions: list[str]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) per question. Raises JudgeFailure."""
        ...

    def chat(
        self, messages: list[dict[str, Any]], *, validate: Callable[[str], Any] | None = None, **decoding: Any
    ) -> str:
        """The reply text. Raises JudgeFailure; UnparseableReply (not cached) when `validate(text)` raises
        ValueError, so that only complete, parsed replies are cached."""
        ...


@dataclass(frozen=True)
class YesNoAnswer:
    """One yes/no judgement with what a record needs to say how it was obtained.

    `source` is "logprobs" when P(yes) comes from token log-probabilities and "text" when the server gave
    none and the decoded answer was used instead (P(yes) is then exactly 0 or 1).
    """

    p_yes: float
    source: str
    snapshot: str
    cached: bool = False


@runtime_checkable
class DetailedJudge(Judge, Protocol):
    """A judge that reports per question, so one failed question does not hide the others' answers."""

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer | JudgeFailure]:
        """One YesNoAnswer or JudgeFailure per question, in order; never raises JudgeFailure."""
        ...


def first_failure_or_values(answers: list[YesNoAnswer | JudgeFailure]) -> list[float]:
    """`yes_probability` on top of `answer_yes_no`: the P(yes) values, or the first failure raised."""
    for answer in answers:
        if isinstance(answer, JudgeFailure):
            raise answer
    return [answer.p_yes for answer in answers]  # type: ignore[union-attr]


YES_WORDS = ("yes",)
NO_WORDS = ("no",)
_TOKEN_MARKS = "\u0120\u2581 \t\n\r"  # byte-level BPE space (Ġ), SentencePiece space (▁), whitespace


def yes_no_of_token(token: str) -> str | None:
    """'yes' / 'no' for token strings like 'Yes', ' YES', 'Ġno', '▁No'; None for anything else."""
    word = token.strip(_TOKEN_MARKS).lower()
    if word in YES_WORDS:
        return "yes"
    if word in NO_WORDS:
        return "no"
    return None


def parse_yes_no(text: str) -> str | None:
    """'yes' / 'no' when the reply's first word is one of them (case-insensitive), else None."""
    match = re.match(r"\W*([A-Za-z]+)", text)
    return yes_no_of_token(match.group(1)) if match else None


def p_yes_from_logprobs(logprobs: dict[str, list[float]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from {'yes': [logprob, ...], 'no': [...]} summed over token variants.

    Returns None when neither word has any probability mass. Computed in log space so that tiny
    probabilities of a random model do not underflow.
    """
    log_yes = _logsumexp(logprobs.get("yes", []))
    log_no = _logsumexp(logprobs.get("no", []))
    if log_yes == -math.inf and log_no == -math.inf:
        return None
    if log_no == -math.inf:
        return 1.0
    if log_yes == -math.inf:
        return 0.0
    return 1.0 / (1.0 + math.exp(log_no - log_yes))


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def cached_yes_no(cache, keys: list[str]) -> list[YesNoAnswer | None]:
    """The cached answer for each key (None where the cache has none, or there is no cache)."""
    if cache is None:
        return [None] * len(keys)
    answers: list[YesNoAnswer | None] = []
    for key in keys:
        hit = cache.get(key)
        answers.append(
            None if hit is None else YesNoAnswer(hit["p_yes"], hit["source"], hit["snapshot"], cached=True)
        )
    return answers


CHAT_DECODING_KEYS = ("temperature", "max_tokens", "top_p", "seed")


class CachedJudge:
    """What every judge does around its model: answers cached by content, `validate` on chat replies,
    failures counted. A judge sets `cache`, `decoding`, `system_prompt` and `stats`, and supplies
    `_key_base` (what its replies depend on besides prompt and decoding), `_yes_no_key`, `_chat_reply`
    (one real chat request) and `answer_yes_no` (built on `_cached_yes_no` and `_put_yes_no`)."""

    cache: ReplyCache | None
    decoding: dict[str, Any]
    system_prompt: str | None
    stats: Counter[str]

    def yes_probability(self, image: Image.Image, questions: list[str]) -> list[float]:
        return first_failure_or_values(self.answer_yes_no(image, questions))

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer | JudgeFailure]:
        """One YesNoAnswer or JudgeFailure per question, in order (the DetailedJudge contract)."""
        raise NotImplementedError

    def chat(
        self, messages: list[dict[str, Any]], *, validate: Callable[[str], Any] | None = None, **decoding: Any
    ) -> str:
        """The reply text. When `validate(text)` raises ValueError (or KeyError, JudgeFailure) the reply is an
        UnparseableReply, counted as a failure and not cached."""
        unknown = set(decoding) - set(CHAT_DECODING_KEYS)
        if unknown:
            raise TypeError(f"unknown decoding options {sorted(unknown)}; known: {list(CHAT_DECODING_KEYS)}")
        options = {**self.decoding, **decoding}
        key = None
        if self.cache is not None:
            prompt = messages_fingerprint(with_system(messages, self.system_prompt))
            key = cache_key(kind="chat", **self._key_base(), prompt=prompt, decoding=options)
            hit = self.cache.get(key)
            if hit is not None:
                self._count("cache_hits")
                return hit["text"]
        try:
            text, entry = self._chat_reply(messages, options)
            if validate is not None:
                try:
                    validate(text)
                except (ValueError, KeyError, JudgeFailure) as error:
                    raise UnparseableReply(f"unparseable reply: {error}", text) from error
        except JudgeFailure:
            self._count("failures")
            raise
        if key is not None:
            self.cache.put(key, {"text": text, **entry})
        return text

    def _cached_yes_no(
        self, image: Image.Image, questions: list[str]
    ) -> tuple[list[str], list[YesNoAnswer | JudgeFailure | None], list[int]]:
        """Each question's cache key and cached answer (None: the model must be asked), and the indexes of
        the questions without one."""
        image_hash = image_sha256(image)
        keys = [self._yes_no_key(image_hash, question) for question in questions]
        answers: list[YesNoAnswer | JudgeFailure | None] = list(cached_yes_no(self.cache, keys))
        self._count("cache_hits", sum(answer is not None for answer in answers))
        return keys, answers, [index for index, answer in enumerate(answers) if answer is None]

    def _put_yes_no(self, key: str, answer: YesNoAnswer) -> None:
        if self.cache is not None:
            self.cache.put(key, {"p_yes": answer.p_yes, "source": answer.source, "snapshot": answer.snapshot})

    def _chat_reply(
        self, messages: list[dict[str, Any]], options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Ask the model once (the system prompt is not yet added): the reply text and what its cache entry
        keeps beside it (at least the snapshot). Raises JudgeFailure, also for an empty reply."""
        raise NotImplementedError

    def _key_base(self) -> dict[str, Any]:
        """Backend, model, snapshot, system prompt and whatever else changes this judge's replies."""
        raise NotImplementedError

    def _yes_no_key(self, image_hash: str, question: str) -> str:
        raise NotImplementedError

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] += n


T = TypeVar("T")
R = TypeVar("R")


def parallel_requests(judge: Any) -> int:
    """How many calls to `judge` are worth making at once from separate threads: an HTTP judge's
    `parallel_requests` (its concurrency); 1 for a judge that runs one model call at a time."""
    return max(1, int(getattr(judge, "parallel_requests", 1) or 1))


def judge_map(
    judge: Any,
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int | None = None,
    key: Callable[[T], Hashable] | None = None,
) -> list[R]:
    """`[fn(item) for item in items]`, with up to `workers` items in progress at once (default
    `parallel_requests(judge)`; the judge's own window still bounds its requests). Items must be
    independent: results equal the loop's, in order.

    Items with equal `key(item)` (e.g. the same image) are never in progress together: the n-th of a key
    runs in wave n, after the earlier waves, so it finds what they stored in the judge's cache, as in the
    loop (same requests, same cache hits)."""
    limit = min(parallel_requests(judge) if workers is None else max(1, workers), len(items))
    if limit <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    results: list[Any] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="judge-map") as pool:
        for wave in _waves(items, key):
            for index, result in zip(wave, pool.map(lambda i: fn(items[i]), wave), strict=True):
                results[index] = result
    return results


def _waves(items: Sequence[T], key: Callable[[T], Hashable] | None) -> list[list[int]]:
    """Item indices in waves: wave n holds the n-th item of every key (all items when there is no key)."""
    if key is None:
        return [list(range(len(items)))]
    seen: dict[Hashable, int] = {}
    waves: list[list[int]] = []
    for index, item in enumerate(items):
        k = key(item)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(index)
    return waves

"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, OpenAI, Azure OpenAI).

Published judge numbers drift when failed calls quietly become scores and snapshots go unrecorded. Here
every request is retried with exponential backoff on the transient errors (timeouts, connection errors,
429, 5xx, malformed bodies) and anything still unusable raises `JudgeFailure(reason)`. The served
snapshot (the response's `model` field) is recorded with every answer. P(yes) comes from the first
token's `top_logprobs`; a server that returns no log-probs falls back to the decoded answer, and the
answer says so (`source="text"`). The API key is read from an environment variable and never stored in
config(), cache entries or log lines.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from PIL import Image

from evalkit import redact
from evalkit.judges.base import (
    CachedJudge,
    JudgeFailure,
    YesNoAnswer,
    p_yes_from_logprobs,
    parse_yes_no,
    yes_no_of_token,
)
from evalkit.judges.cache import ReplyCache, cache_key, open_cache
from evalkit.judges.concurrency import AdaptiveLimit
from evalkit.judges.messages import (
    image_to_data_url,
    layout_key,
    to_openai,
    with_system,
    yes_no_content,
)

logger = logging.getLogger(__name__)

_RETRY_STATUSES = (408, 409, 429)  # request timeout, conflict (OpenAI's "retry"), rate limit; 5xx too
_OVERLOAD_STATUSES = (429, 503)  # the server asks for fewer requests: the concurrency window halves


def public_url(url: str | None) -> str | None:
    """The URL without user info, query or fragment, which may carry credentials."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _Retryable(Exception):
    """A transient problem worth another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class OpenAIJudge(CachedJudge):
    """Judge over the official `openai` client; thread-safe, with an adaptive per-judge concurrency window.

    `concurrency` is the most requests in flight; with `adaptive_concurrency` (the default) the window
    starts at min(8, concurrency), grows while requests succeed and halves on 429/503, never below
    `min_concurrency`, and a Retry-After pauses every new request (see `evalkit.judges.concurrency`).
    `adaptive_concurrency=False` keeps a fixed window of `concurrency`.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = None,
        azure_api_version: str | None = None,
        snapshot: str | None = None,
        system_prompt: str | None = None,
        cache: ReplyCache | str | os.PathLike | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        top_p: float = 1.0,
        seed: int | None = 0,
        logprobs: bool = True,
        top_logprobs: int = 20,
        yes_no_max_tokens: int = 1,
        concurrency: int = 32,
        min_concurrency: int = 1,
        adaptive_concurrency: bool = True,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        max_tokens_field: str = "max_tokens",
    ):
        import openai

        self.name = model
        self.model = model
        self.azure = azure_api_version is not None
        self.base_url = base_url
        self.api_key_env = api_key_env or ("AZURE_OPENAI_API_KEY" if self.azure else "OPENAI_API_KEY")
        self.pinned_snapshot = snapshot
        self.system_prompt = system_prompt
        self.cache = open_cache(cache)
        self.decoding = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p, "seed": seed}
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.yes_no_max_tokens = yes_no_max_tokens
        # "max_completion_tokens" for OpenAI reasoning models, which reject "max_tokens".
        self.max_tokens_field = max_tokens_field
        self.concurrency = concurrency
        self.min_concurrency = min_concurrency
        self.adaptive_concurrency = adaptive_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.stats: Counter[str] = Counter()
        self.served_snapshots: set[str] = set()
        try:
            self._window = AdaptiveLimit(concurrency, minimum=min_concurrency, adaptive=adaptive_concurrency)
        except ValueError as error:
            from evalkit.errors import EvalkitError

            raise EvalkitError(f"judge '{model}': {error}") from None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._warned_text_fallback = False

        api_key = os.environ.get(self.api_key_env)
        if not api_key:
            if base_url is None or self.azure:
                from evalkit.errors import EvalkitError

                raise EvalkitError(f"judge '{model}' needs an API key: set ${self.api_key_env}")
            api_key = "EMPTY"  # local vLLM / SGLang servers started without --api-key
        redact.register(api_key)  # never echoed into records, summaries, cache entries or logs
        redact.register_url(
            base_url
        )  # The client's own retries are off: this class retries, so it can count attempts and back off.
        if self.azure:
            self._client = openai.AzureOpenAI(
                azure_endpoint=base_url,
                api_version=azure_api_version,
                api_key=api_key,
                timeout=timeout,
                max_retries=0,
            )
        else:
            self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)

    # ------------------------------------------------------------------ interface

    def config(self) -> dict[str, Any]:
        return {
            "backend": "azure" if self.azure else self.backend,
            "model": self.model,
            "snapshot": self.pinned_snapshot,
            "served_snapshots": sorted(self.served_snapshots),
            "base_url": public_url(self.base_url),
            "api_key_env": self.api_key_env,
            "system_prompt": self.system_prompt,
            "decoding": dict(self.decoding),
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "yes_no_max_tokens": self.yes_no_max_tokens,
            "max_tokens_field": self.max_tokens_field,
            "concurrency": self.concurrency,
            "min_concurrency": self.min_concurrency,
            "adaptive_concurrency": self.adaptive_concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    @property
    def parallel_requests(self) -> int:
        """How many calls callers may usefully make at once (images, samples): the window's maximum."""
        return self.concurrency

    @property
    def window(self) -> AdaptiveLimit:
        """The concurrency window (its state says how far the server let it grow)."""
        return self._window

    def answer_yes_no(self, image: Image.Image, questions: list[str]) -> list[YesNoAnswer | JudgeFailure]:
        """Cached answers first; the rest go to the judge's request pool, which callers share: questions of
        several images asked from several threads are in flight together, within the window."""
        keys, answers, missing = self._cached_yes_no(image, questions)
        if not missing:
            return answers  # type: ignore[return-value]
        data_url = image_to_data_url(image)

        def one(index: int) -> YesNoAnswer | JudgeFailure:
            try:
                return self._ask_yes_no(data_url, questions[index], keys[index])
            except JudgeFailure as failure:
                self._count("failures")
                return failure

        if self.concurrency == 1 or len(missing) == 1:
            results = [one(index) for index in missing]
        else:
            pool = self._request_pool()
            results = [future.result() for future in [pool.submit(one, index) for index in missing]]
        for index, result in zip(missing, results, strict=True):
            answers[index] = result
        return answers  # type: ignore[return-value]

    def _chat_reply(
        self, messages: list[dict[str, Any]], options: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        full = with_system(messages, self.system_prompt)
        response = self._create(messages=to_openai(full), **self._request_options(options))
        text, snapshot = self._reply_text(response)
        return text, {"snapshot": snapshot}

    # ------------------------------------------------------------------ yes/no

    def chat_completion(self, **request: Any) -> dict[str, Any]:
        """One raw chat completion as JSON, with this judge's transport retries, for protocols that send
        and parse their own requests (`dvreward@alphagrpo`); not cached. Raises JudgeFailure."""
        request.pop("model", None)
        return self._create(**request).model_dump()

    def _ask_yes_no(self, data_url: str, question: str, key: str) -> YesNoAnswer:
        content = yes_no_content({"type": "image_url", "image_url": {"url": data_url}}, question)
        messages = with_system([{"role": "user", "content": content}], self.system_prompt)
        response = self._create(messages=messages, **self._yes_no_options())
        answer = self._parse_yes_no(response)
        self._put_yes_no(key, answer)
        return answer

    def _yes_no_options(self) -> dict[str, Any]:
        """P(yes) is read from the distribution, not sampled: always temperature 0, whatever chat uses."""
        decoding = {**self.decoding, "temperature": 0.0, "top_p": 1.0, "max_tokens": self.yes_no_max_tokens}
        options = self._request_options(decoding)
        if self.logprobs:
            options.update(logprobs=True, top_logprobs=self.top_logprobs)
        return options

    def _parse_yes_no(self, response) -> YesNoAnswer:
        """P(yes) from the first token's top_logprobs; the decoded answer when the server sent none."""
        text, snapshot = self._reply_text(response, allow_empty=True)
        logprobs = getattr(response.choices[0], "logprobs", None)
        entries = getattr(logprobs, "content", None) or []
        if entries:
            first = entries[0]
            candidates = list(getattr(first, "top_logprobs", None) or [])
            if all(alt.token != first.token for alt in candidates):
                candidates.append(first)
            grouped: dict[str, list[float]] = {"yes": [], "no": []}
            for alt in candidates:
                kind = yes_no_of_token(alt.token)
                if kind is not None:
                    grouped[kind].append(float(alt.logprob))
            p_yes = p_yes_from_logprobs(grouped)
            if p_yes is not None:
                return YesNoAnswer(p_yes, "logprobs", snapshot)
            raise JudgeFailure(
                f"no yes/no token among the top {len(candidates)} logprobs (reply {text[:60]!r})"
            )
        word = parse_yes_no(text)
        if word is None:
            raise JudgeFailure(f"unparseable yes/no reply: {text[:80]!r}")
        self._count("text_fallbacks")
        if self.logprobs and not self._warned_text_fallback:
            self._warned_text_fallback = True
            logger.warning(
                "judge %s returned no logprobs; P(yes) falls back to the decoded answer (0 or 1)", self.model
            )
        return YesNoAnswer(1.0 if word == "yes" else 0.0, "text", snapshot)

    # ------------------------------------------------------------------ transport

    def _request_pool(self) -> ThreadPoolExecutor:
        """One pool of `concurrency` threads per judge; its tasks never wait on the pool themselves."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge-http")
            return self._pool

    def _send(self, request: dict[str, Any]):
        """One HTTP request inside the concurrency window; its outcome moves the window."""
        import openai

        ticket = self._window.acquire()
        try:
            self._count("requests")
            response = self._client.chat.completions.create(model=self.model, **request)
        except openai.APIStatusError as error:
            if error.status_code in _OVERLOAD_STATUSES:
                self._count("overloads")
                self._window.release(ticket, "overload", _retry_after(error.response))
            else:
                self._window.release(ticket, "other")
            raise
        except BaseException:
            self._window.release(ticket, "other")
            raise
        self._window.release(ticket, "ok")
        return response

    def _create(self, **request: Any):
        """One chat completion with retries and exponential backoff on transient errors."""
        import openai

        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                response = self._send(request)
                if not isinstance(getattr(response, "choices", None), list) or not response.choices:
                    raise _Retryable("malformed response (no choices)")
                if getattr(response.choices[0], "message", None) is None:
                    raise _Retryable("malformed response (no message)")
                return response
            except openai.APITimeoutError:
                problem = _Retryable(f"timeout after {self.timeout:g}s")
            except openai.APIConnectionError as error:
                problem = _Retryable(f"connection error ({type(error.__cause__).__name__})")
            except openai.APIStatusError as error:
                status = error.status_code
                if status not in _RETRY_STATUSES and status < 500:
                    raise JudgeFailure(f"http {status}: {self._scrub(_short(error.message))}") from None
                problem = _Retryable(f"http {status}", _retry_after(error.response))
            except openai.APIResponseValidationError:
                problem = _Retryable("malformed response body")
            except _Retryable as error:
                problem = error
            except (json.JSONDecodeError, UnicodeDecodeError) as error:  # a 200 whose body is not JSON
                problem = _Retryable(f"malformed response ({type(error).__name__})")
            self._count("retries" if attempt + 1 < attempts else "exhausted")
            if attempt + 1 == attempts:
                raise JudgeFailure(f"{problem.reason} (gave up after {attempts} attempts)")
            delay = min(self.backoff_max, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
            if problem.retry_after is not None:
                delay = min(self.backoff_max, max(delay, problem.retry_after))
            logger.warning(
                "judge %s: %s; retry %d/%d in %.2fs",
                self.model,
                problem.reason,
                attempt + 1,
                self.max_retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _reply_text(self, response, allow_empty: bool = False) -> tuple[str, str]:
        """The reply text and served snapshot; refusals, empty replies and snapshot mismatches fail."""
        snapshot = str(getattr(response, "model", None) or self.model)
        if self.pinned_snapshot is not None and snapshot != self.pinned_snapshot:
            raise JudgeFailure(f"served snapshot {snapshot!r} is not the pinned {self.pinned_snapshot!r}")
        with self._stats_lock:
            self.served_snapshots.add(snapshot)
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            raise JudgeFailure(f"refusal: {self._scrub(_short(refusal or 'content filter'))}")
        text = choice.message.content
        if not isinstance(text, str) or (not allow_empty and not text.strip()):
            raise JudgeFailure("empty reply")
        return text, snapshot

    def _request_options(self, decoding: dict[str, Any]) -> dict[str, Any]:
        options = {
            "temperature": decoding["temperature"],
            self.max_tokens_field: decoding["max_tokens"],
            "top_p": decoding["top_p"],
        }
        if decoding.get("seed") is not None:
            options["seed"] = decoding["seed"]
        return options

    def _key_base(self) -> dict[str, Any]:
        # The base URL is left out on purpose: the same model moves between cluster nodes. Serve distinct
        # weights under distinct model names (or pin a snapshot) so that their replies never share keys.
        return {
            "backend": "openai",
            "model": self.model,
            "snapshot": self.pinned_snapshot,
            "system": self.system_prompt,
        }

    def _yes_no_key(self, image_hash: str, question: str) -> str:
        import hashlib

        prompt = hashlib.sha256(question.encode()).hexdigest()
        decoding = self._yes_no_options()
        return cache_key(
            kind="yes_probability",
            **self._key_base(),
            prompt=prompt,
            images=[image_hash],
            decoding=decoding,
            **layout_key(),
        )

    def _scrub(self, text: str) -> str:
        """Remove credentials (API key, URL user info and query values) from text the server sent back:
        some servers echo the request URL or key in their errors."""
        return redact.redact(text)

    def _count(self, what: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[what] += n

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.model!r}, base_url={public_url(self.base_url)!r})"


def _retry_after(response) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110); None when absent or
    unreadable. A date in the past is 0."""
    try:
        value = response.headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _short(text: Any, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The HTTP judge's adaptive concurrency window, against the local server with a scripted model."""

from __future__ import annotations

import email.utils
import importlib.util
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from evalkit.errors import EvalkitError
from evalkit.judges.base import JudgeFailure
from evalkit.judges.concurrency import START, AdaptiveLimit
from evalkit.judges.server import JudgeServer
from evalkit.testing.served import ScriptedJudgeModel, scripted_p_yes

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed", allow_module_level=True)

from evalkit.judges.messages import image_sha256  # noqa: E402
from evalkit.judges.openai_http import OpenAIJudge, _retry_after  # noqa: E402


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8))


def judge_for(server: JudgeServer, **options) -> OpenAIJudge:
    defaults = dict(base_url=server.url, timeout=30.0, max_retries=5, backoff=0.01, backoff_max=0.05)
    return OpenAIJudge(server.model_name, **{**defaults, **options})


def test_window_slow_start_then_additive_growth_capped_at_the_maximum() -> None:
    window = AdaptiveLimit(20)
    assert window.window == START
    for _ in range(START):  # slow start: one more slot per success, so a window of successes doubles it
        window.release(window.acquire(), "ok")
    assert window.window == 2 * START
    window.release(window.acquire(), "overload")
    assert window.window == START  # halved, and growth is now additive
    for _ in range(START + 1):  # about one slot per window of successes
        window.release(window.acquire(), "ok")
    assert window.window == START + 1
    for _ in range(1000):
        window.release(window.acquire(), "ok")
    assert window.window == 20
    assert AdaptiveLimit(3).window == 3  # never starts above the maximum


def test_a_burst_of_overloads_halves_the_window_once() -> None:
    window = AdaptiveLimit(16)
    tickets = [window.acquire() for _ in range(8)]
    for ticket in tickets:  # all sent before the first decrease: one decrease, not eight
        window.release(ticket, "overload")
    assert window.window == 4 and window.decreases == 1 and window.overloads == 8
    window.release(window.acquire(), "overload")  # sent after it: the smaller window is still too big
    assert window.window == 2 and window.decreases == 2
    for _ in range(10):
        window.release(window.acquire(), "overload")
    assert window.window == 1  # never below min_concurrency
    assert AdaptiveLimit(16, minimum=3).window == START


def test_a_fixed_window_never_moves() -> None:
    window = AdaptiveLimit(5, adaptive=False)
    window.release(window.acquire(), "overload")
    window.release(window.acquire(), "ok")
    assert window.window == 5


def test_retry_after_holds_back_every_new_request() -> None:
    window = AdaptiveLimit(4)
    window.release(window.acquire(), "overload", retry_after=0.3)
    start = time.monotonic()
    done = []
    threads = [threading.Thread(target=lambda: done.append(window.acquire())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - start >= 0.28 and len(done) == 2


def test_in_flight_requests_never_exceed_the_window() -> None:
    window = AdaptiveLimit(3, adaptive=False)
    peak, lock, inside = [0], threading.Lock(), [0]

    def one() -> None:
        ticket = window.acquire()
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.01)
        with lock:
            inside[0] -= 1
        window.release(ticket, "ok")

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 3 == window.peak_in_flight


def test_retry_after_header_as_seconds_or_http_date() -> None:
    def response(value):
        return SimpleNamespace(headers={} if value is None else {"retry-after": value})

    assert _retry_after(response("2.5")) == 2.5
    assert _retry_after(response(None)) is None and _retry_after(response("soon")) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(response(later)) <= 31
    assert _retry_after(response(email.utils.formatdate(time.time() - 60, usegmt=True))) == 0.0


def test_bad_window_options_are_user_errors() -> None:
    with pytest.raises(EvalkitError, match="min_concurrency"):
        OpenAIJudge("m", base_url="http://127.0.0.1:9/v1", concurrency=4, min_concurrency=5)


def test_client_settles_near_what_the_server_accepts_with_no_failures() -> None:
    """A server that answers 429 above K concurrent requests: the window settles near K, no answer fails;
    a fixed window at the maximum keeps hitting the limit."""
    capacity, questions = 4, [f"Is there object number {i}?" for i in range(60)]
    picture = image(0)
    expected = [scripted_p_yes(q, [image_sha256(picture)]) for q in questions]
    rejected = {}
    for adaptive in (True, False):
        with JudgeServer(ScriptedJudgeModel(), latency=0.1, max_concurrent=capacity) as server:
            judge = judge_for(server, concurrency=16, adaptive_concurrency=adaptive, max_retries=8)
            answers = judge.answer_yes_no(picture, questions)
            rejected[adaptive] = server.rejected
            if not adaptive:
                break
            assert not [a for a in answers if isinstance(a, JudgeFailure)]
            assert [a.p_yes for a in answers] == pytest.approx(expected, abs=1e-6)
            state = judge.window.state()
            # near K, far below the maximum of 16: additive growth probes one or two slots above K between
            # overloads, so where it stands when the last answer arrives depends on timing
            assert capacity // 2 <= state["window"] <= 2 * capacity, state
            assert state["decreases"] >= 1
            late = server.concurrency_trace[len(server.concurrency_trace) // 2 :]
            assert sum(late) / len(late) >= capacity / 2, late  # the capacity is used, not collapsed to 1
            assert server.rejected <= len(questions) // 4, state
            judge.close()
    assert rejected[False] > 2 * rejected[True], rejected


def test_server_retry_after_pauses_the_client() -> None:
    with JudgeServer(ScriptedJudgeModel(), max_concurrent=1, retry_after="0.4", latency=0.05) as server:
        judge = judge_for(server, concurrency=4, backoff=0.0, backoff_max=0.0)
        start = time.monotonic()
        answers = judge.answer_yes_no(image(1), ["Is it red?", "Is it round?", "Is it big?"])
        assert not [a for a in answers if isinstance(a, JudgeFailure)]
        assert server.rejected >= 1 and time.monotonic() - start >= 0.4

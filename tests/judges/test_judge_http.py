"""OpenAI-compatible HTTP judge against a local server (127.0.0.1, port 0) backed by the tiny Qwen2-VL."""

from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest
from PIL import Image

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.errors import EvalkitError
from evalkit.judges import JudgeFailure, ReplyCache, load_judge
from evalkit.testing.judges import tiny_qwen2vl_path

if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("openai") is None:
    pytest.skip("transformers, torchvision and openai are needed", allow_module_level=True)

from evalkit.judges.hf import HFJudge  # noqa: E402
from evalkit.judges.openai_http import OpenAIJudge  # noqa: E402
from evalkit.judges.server import JudgeServer  # noqa: E402

QUESTIONS = [
    "Is there a red cat in the image? Answer Yes or No.",
    "Are there two cars?",
    "Is the clock blue?",
]
SECRET = "sk-evalkit-test-0123456789abcdef"


@pytest.fixture(scope="module")
def local_judge(tmp_path_factory) -> HFJudge:
    path = tiny_qwen2vl_path(tmp_path_factory.getbasetemp() / "tiny-qwen2vl")
    return HFJudge.from_pretrained(str(path), name="tiny-qwen2vl", device="cpu")


@pytest.fixture(scope="module")
def server(local_judge):
    # top_logprobs may cover the whole tiny vocabulary, so P(yes) over all spellings equals the local one.
    with JudgeServer(local_judge, max_logprobs=1024, fault_delay=1.0) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_leftover_faults(server):
    server.faults.clear()
    yield
    server.faults.clear()


def http_judge(server: JudgeServer, local_judge: HFJudge, **options) -> OpenAIJudge:
    # A generous timeout: a real request of the tiny model can take over a second on a loaded machine, and
    # a timed-out request is retried, so the server counts more requests than the test expects. Tests of
    # the timeout path pass a short one and make the server's hang longer than it.
    defaults = dict(
        base_url=server.url,
        top_logprobs=len(local_judge.tokenizer),
        timeout=30.0,
        max_retries=3,
        backoff=0.01,
        backoff_max=0.05,
    )
    return OpenAIJudge("tiny-qwen2vl", **{**defaults, **options})


def noise_image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (80, 100, 3), dtype=np.uint8))


def test_http_p_yes_matches_the_local_judge(server, local_judge) -> None:
    image = noise_image(0)
    judge = http_judge(server, local_judge)
    answers = judge.answer_yes_no(image, QUESTIONS)
    local = local_judge.yes_probability(image, QUESTIONS)
    assert [a.p_yes for a in answers] == pytest.approx(local, abs=1e-5)
    assert all(a.source == "logprobs" and a.snapshot == "tiny-qwen2vl" for a in answers)
    assert judge.config()["served_snapshots"] == ["tiny-qwen2vl"]


def test_truncated_top_logprobs_still_give_a_probability_or_a_failure(server, local_judge) -> None:
    judge = http_judge(server, local_judge, top_logprobs=5)
    for answer in judge.answer_yes_no(noise_image(1), QUESTIONS):
        if isinstance(answer, JudgeFailure):
            assert "no yes/no token among the top" in answer.reason
        else:
            assert 0.0 <= answer.p_yes <= 1.0


def test_cache_hits_skip_the_server(tmp_path, server, local_judge) -> None:
    cache = ReplyCache(tmp_path / "judge_cache.sqlite")
    judge = http_judge(server, local_judge, cache=cache)
    image = noise_image(2)
    before = server.requests
    first = judge.yes_probability(image, QUESTIONS)
    assert server.requests - before == len(QUESTIONS)
    again = judge.answer_yes_no(image, QUESTIONS)
    assert [a.p_yes for a in again] == first and all(a.cached for a in again)
    assert server.requests - before == len(QUESTIONS)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Hi"}]}
    ]
    reply = judge.chat(messages, max_tokens=4)
    assert judge.chat(messages, max_tokens=4) == reply
    assert server.requests - before == len(QUESTIONS) + 1
    # A fresh judge on the same file (another process, a resumed run) hits the cache too.
    fresh = http_judge(server, local_judge, cache=ReplyCache(cache.path))
    assert fresh.yes_probability(image, QUESTIONS) == first
    assert server.requests - before == len(QUESTIONS) + 1


@pytest.mark.parametrize("fault", ["500", "503", "429", "timeout", "drop", "garbage", "bad_json"])
def test_transient_faults_are_retried_then_succeed(server, local_judge, fault, monkeypatch) -> None:
    if fault == "timeout":  # the hang outlasts the client's timeout; the real answer comes well within it
        monkeypatch.setattr(server, "fault_delay", 4.0)
    judge = http_judge(server, local_judge, timeout=2.0 if fault == "timeout" else 30.0)
    image = noise_image(3)
    expected = local_judge.yes_probability(image, QUESTIONS[:1])
    server.faults.add(fault, times=2)
    before = server.requests
    assert judge.yes_probability(image, QUESTIONS[:1]) == pytest.approx(expected, abs=1e-5)
    assert server.requests - before == 3 and judge.stats["retries"] == 2
    assert server.faults.served[-2:] == [fault, fault]


def test_persistent_faults_become_failures_never_scores(tmp_path, server, local_judge) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite")
    judge = http_judge(server, local_judge, max_retries=2, cache=cache, timeout=0.5)  # every attempt hangs
    server.faults.add("500", times=3)
    answers = judge.answer_yes_no(noise_image(4), QUESTIONS[:1])
    assert isinstance(answers[0], JudgeFailure)
    assert answers[0].reason == "http 500 (gave up after 3 attempts)"
    server.faults.add("timeout", times=3)
    with pytest.raises(JudgeFailure, match=r"timeout after 0.5s \(gave up after 3 attempts\)"):
        judge.yes_probability(noise_image(4), QUESTIONS[:1])
    assert judge.stats["failures"] == 2 and len(cache) == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("refusal", "refusal: I'm sorry"),
        ("nonsense", "unparseable yes/no reply: 'Banana bread.'"),
        ("empty", "unparseable yes/no reply: ''"),
    ],
)
def test_unusable_replies_fail_without_retry(tmp_path, server, local_judge, fault, reason) -> None:
    cache = ReplyCache(tmp_path / "c.sqlite")
    judge = http_judge(server, local_judge, cache=cache)
    server.faults.add(fault)
    before = server.requests
    (answer,) = judge.answer_yes_no(noise_image(5), QUESTIONS[:1])
    assert isinstance(answer, JudgeFailure) and answer.reason.startswith(reason)
    assert server.requests - before == 1 and len(cache) == 0
    # Not cached, so the next run asks again and gets a real answer.
    assert judge.answer_yes_no(noise_image(5), QUESTIONS[:1])[0].source == "logprobs"


def test_one_failed_question_does_not_hide_the_others(server, local_judge) -> None:
    judge = http_judge(server, local_judge, concurrency=1)
    server.faults.add("refusal")
    answers = judge.answer_yes_no(noise_image(6), QUESTIONS)
    assert isinstance(answers[0], JudgeFailure)
    assert all(not isinstance(a, JudgeFailure) for a in answers[1:])
    server.faults.add("refusal")
    with pytest.raises(JudgeFailure):
        judge.yes_probability(noise_image(6), QUESTIONS)


def test_missing_logprobs_fall_back_to_the_answer_and_say_so(server, local_judge, caplog) -> None:
    judge = http_judge(server, local_judge)
    server.faults.add("text_yes")
    with caplog.at_level(logging.WARNING):
        (answer,) = judge.answer_yes_no(noise_image(7), QUESTIONS[:1])
    assert answer.p_yes == 1.0 and answer.source == "text"
    assert judge.stats["text_fallbacks"] == 1
    assert "falls back to the decoded answer" in caplog.text


def test_chat_failures(server, local_judge) -> None:
    judge = http_judge(server, local_judge)
    server.faults.add("empty")
    with pytest.raises(JudgeFailure, match="empty reply"):
        judge.chat([{"role": "user", "content": "Hi"}], max_tokens=3)
    server.faults.add("refusal")
    with pytest.raises(JudgeFailure, match="refusal"):
        judge.chat([{"role": "user", "content": "Hi"}], max_tokens=3)
    with pytest.raises(JudgeFailure, match="unparseable reply: invalid literal"):
        judge.chat([{"role": "user", "content": "Hi"}], max_tokens=3, validate=lambda text: int("bad"))


def test_client_errors_are_not_retried(server, local_judge) -> None:
    wrong = OpenAIJudge("not-served", base_url=server.url, timeout=30.0, max_retries=3, backoff=0.01)
    before = server.requests
    with pytest.raises(JudgeFailure, match="http 404"):
        wrong.yes_probability(noise_image(8), QUESTIONS[:1])
    assert server.requests == before + 1  # one request, no retry


def test_pinned_snapshot_mismatch_is_a_failure(server, local_judge) -> None:
    judge = http_judge(server, local_judge, snapshot="tiny-qwen2vl-2024-01-01")
    with pytest.raises(JudgeFailure, match="not the pinned"):
        judge.yes_probability(noise_image(9), QUESTIONS[:1])


def test_api_key_comes_from_the_environment_and_is_never_written(tmp_path, local_judge, monkeypatch, caplog):
    monkeypatch.setenv("EVALKIT_TEST_JUDGE_KEY", SECRET)
    cache_path = tmp_path / "judge_cache.sqlite"
    with JudgeServer(local_judge, api_key=SECRET, max_logprobs=1024) as keyed, caplog.at_level(logging.DEBUG):
        judge = load_judge(
            "openai:tiny-qwen2vl",
            url=keyed.url,
            cache_path=cache_path,
            api_key_env="EVALKIT_TEST_JUDGE_KEY",
            backoff=0.01,
            top_logprobs=len(local_judge.tokenizer),
        )
        values = judge.yes_probability(noise_image(10), QUESTIONS[:2])
        judge.chat([{"role": "user", "content": "Hi"}], max_tokens=3)
        keyed.faults.add("500", times=1)
        judge.chat([{"role": "user", "content": "Hello"}], max_tokens=3)
        monkeypatch.setenv("EVALKIT_TEST_JUDGE_KEY", "sk-wrong")
        wrong = OpenAIJudge("tiny-qwen2vl", base_url=keyed.url, api_key_env="EVALKIT_TEST_JUDGE_KEY")
        with pytest.raises(JudgeFailure, match="http 401"):
            wrong.chat([{"role": "user", "content": "Hi"}])
    assert len(values) == 2
    config = judge.config()
    assert config["api_key_env"] == "EVALKIT_TEST_JUDGE_KEY"
    assert SECRET not in json.dumps(config) and SECRET not in repr(judge)
    for path in tmp_path.iterdir():  # the database and its WAL files
        assert SECRET.encode() not in path.read_bytes(), path.name
    assert SECRET not in caplog.text


def test_api_key_required_for_hosted_endpoints(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EvalkitError, match=r"\$OPENAI_API_KEY"):
        OpenAIJudge("gpt-4o-2024-08-06")


def test_base_url_credentials_are_not_recorded(monkeypatch) -> None:
    judge = OpenAIJudge("m", base_url="http://user:pw@127.0.0.1:9/v1?token=abc")
    assert judge.config()["base_url"] == "http://127.0.0.1:9/v1"


def test_concurrency_limit_is_respected(server, local_judge) -> None:
    import threading

    judge = http_judge(server, local_judge, concurrency=2)
    in_flight, peak, lock = [0], [0], threading.Lock()
    create = judge._client.chat.completions.create

    def counting_create(**request):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return create(**request)
        finally:
            with lock:
                in_flight[0] -= 1

    judge._client.chat.completions.create = counting_create
    questions = [f"Is there a cat number {i}?" for i in range(6)]
    assert len(judge.yes_probability(noise_image(11), questions)) == 6
    assert peak[0] <= 2


def test_yes_no_requests_are_greedy_with_logprobs_whatever_chat_uses(server, local_judge) -> None:
    judge = http_judge(server, local_judge, temperature=1.0, max_tokens_field="max_completion_tokens")
    sent: list[dict] = []
    create = judge._client.chat.completions.create

    def spying_create(**request):
        sent.append(request)
        return create(**request)

    judge._client.chat.completions.create = spying_create
    image = noise_image(12)
    assert judge.yes_probability(image, QUESTIONS[:1]) == pytest.approx(
        local_judge.yes_probability(image, QUESTIONS[:1]), abs=1e-5
    )
    judge.chat([{"role": "user", "content": "Hi"}], max_tokens=2)
    yes_no, chat = sent
    assert (
        yes_no["temperature"] == 0.0 and yes_no["logprobs"] is True and yes_no["max_completion_tokens"] == 1
    )
    assert yes_no["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert chat["temperature"] == 1.0 and chat["max_completion_tokens"] == 2 and "logprobs" not in chat

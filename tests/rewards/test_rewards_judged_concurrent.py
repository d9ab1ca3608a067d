"""VIEScore and UnifiedReward score a batch's images concurrently through the HTTP judge (judge_map), against
the project's local OpenAI-compatible server with a scripted model: same rewards, same order, same failures
and cache use as one image at a time."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from evalkit.judges.messages import image_sha256
from evalkit.judges.server import JudgeServer
from evalkit.rewards.unifiedreward import UnifiedRewardScorer
from evalkit.rewards.viescore import VIEScoreScorer
from evalkit.testing.served import ScriptedJudgeModel, scored_reply

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed", allow_module_level=True)

from evalkit.judges.openai_http import OpenAIJudge  # noqa: E402

N_IMAGES, LATENCY = 8, 0.1  # seconds per request: long enough that a busy CI machine still overlaps them
REWARDS: dict[str, Callable] = {"viescore": VIEScoreScorer, "unifiedreward": UnifiedRewardScorer}


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8))


def model(unparseable: set[str] = frozenset(), crash: set[str] = frozenset()) -> ScriptedJudgeModel:
    """Scored replies, except for images whose hash is in `unparseable` (no score) or `crash` (HTTP 500)."""

    def reply(text: str, hashes: list[str]) -> str:
        if hashes[0] in crash:
            raise RuntimeError("scripted model failure")
        return "I cannot rate this image." if hashes[0] in unparseable else scored_reply(text, hashes)

    return ScriptedJudgeModel(chat_reply=reply)


def run(
    name: str, images, prompts, workers: int | None, *, cache=None, **faults
) -> tuple[list, list[str], dict]:
    """(rewards, failures, server counts) of one batch scored on a fresh server."""
    with JudgeServer(model(**faults), latency=LATENCY) as server:
        judge = OpenAIJudge(
            server.model_name, base_url=server.url, concurrency=16, timeout=30.0, max_retries=1,
            backoff=0.01, cache=cache,
        )  # fmt: skip
        scorer = REWARDS[name](judge, workers=workers)
        values = scorer.score(images, prompts, [{} for _ in images])
        judge.close()
        served = {
            "requests": server.requests,
            "peak": server.peak_in_flight,
            "hits": judge.stats["cache_hits"],
        }
    return values, scorer.failures, served


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_a_batch_is_scored_concurrently_with_the_sequential_rewards_in_order(name):
    images = [image(i) for i in range(N_IMAGES)]
    prompts = [f"a photo of object {i}" for i in range(N_IMAGES)]
    sequential, _, one_at_a_time = run(name, images, prompts, workers=1)
    concurrent, failures, together = run(name, images, prompts, workers=None)
    assert concurrent == sequential and not failures
    assert None not in concurrent and len(set(concurrent)) > N_IMAGES // 2  # each image its own reward
    assert together["requests"] == one_at_a_time["requests"]
    assert one_at_a_time["peak"] == 1 and together["peak"] >= 4  # several images' requests in flight at once


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_failing_images_are_counted_exactly_as_one_at_a_time(name):
    images = [image(i) for i in range(N_IMAGES)]
    prompts = [f"a photo of object {i}" for i in range(N_IMAGES)]
    faults = {"unparseable": {image_sha256(images[5])}, "crash": {image_sha256(images[2])}}
    sequential, seq_failures, _ = run(name, images, prompts, workers=1, **faults)
    concurrent, failures, together = run(name, images, prompts, workers=None, **faults)
    assert concurrent == sequential and failures == seq_failures and together["peak"] >= 4
    assert [i for i, v in enumerate(concurrent) if v is None] == [2, 5]  # abstain, never a 0
    # the crash first (image 2), then the unparseable replies (image 5): VIEScore re-asks once
    unparseable = 2 if name == "viescore" else 1
    assert [f.split(":")[0] for f in failures] == ["judge"] + ["unparseable"] * unparseable
    assert "I cannot rate this image." in failures[-1]


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_cache_use_matches_one_at_a_time_with_a_repeated_image(name, tmp_path):
    """A repeated image waits for its first copy, so it is served from the cache as in a loop; a second
    pass asks the judge only for the unparseable image (such replies are never cached)."""
    images = [image(i) for i in range(6)]
    images[4] = images[1].copy()  # same pixels: VIEScore's PQ request (and here the whole request) repeats
    prompts = [f"a photo of object {i}" for i in range(6)]
    prompts[4] = prompts[1]
    faults = {"unparseable": {image_sha256(images[3])}}
    counts = {}
    for workers in (1, None):
        cache = tmp_path / f"cache-{workers}.sqlite"
        first = run(name, images, prompts, workers, cache=cache, **faults)
        second = run(name, images, prompts, workers, cache=cache, **faults)
        counts[workers] = (first, second)
    (seq_first, seq_second), (first, second) = counts[1], counts[None]
    assert first[:2] == seq_first[:2] and second[:2] == seq_second[:2] and first[0] == second[0]
    assert first[2]["requests"] == seq_first[2]["requests"] and first[2]["hits"] == seq_first[2]["hits"] > 0
    assert second[2]["requests"] == seq_second[2]["requests"] == (2 if name == "viescore" else 1)


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_a_local_judge_is_asked_one_image_at_a_time_on_the_calling_thread(name):
    """A judge without `parallel_requests` (hf:, vllm:, sglang: in process) keeps the plain loop."""

    class LocalJudge:
        name = "local"

        def __init__(self):
            self.threads: set[int] = set()

        def config(self):
            return {"model": "local"}

        def yes_probability(self, image, questions):
            raise NotImplementedError

        def chat(self, messages, *, validate=None, **decoding):
            self.threads.add(threading.get_ident())
            return scored_reply(
                messages[0]["content"][1]["text"], [image_sha256(messages[0]["content"][0]["image"])]
            )

    judge = LocalJudge()
    values = REWARDS[name](judge).score([image(i) for i in range(4)], ["a cat"] * 4, [{}] * 4)
    assert None not in values and judge.threads == {threading.get_ident()}

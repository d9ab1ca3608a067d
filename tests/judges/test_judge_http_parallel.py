"""Many images at once through the HTTP judge (DVReward, judged benchmarks) and the yes/no message layout,
against the local server with a scripted model."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time

import numpy as np
import pytest
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.benchmarks.dpg.data import DPGItem, Proposition
from evalkit.benchmarks.dpg.scorer import DPGScorer
from evalkit.dvreward.format import Decomposition
from evalkit.judges.base import judge_map, parallel_requests
from evalkit.judges.cache import cache_key
from evalkit.judges.messages import YES_NO_LAYOUT, layout_key, messages_fingerprint, user_message
from evalkit.judges.server import JudgeServer
from evalkit.rewards.dvreward import DVReward
from evalkit.testing.served import ScriptedJudgeModel

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed", allow_module_level=True)

from evalkit.judges.openai_http import OpenAIJudge  # noqa: E402

N_IMAGES, N_QUESTIONS = 6, 4


def image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8))


def judge_for(server: JudgeServer, **options) -> OpenAIJudge:
    return OpenAIJudge(server.model_name, base_url=server.url, timeout=30.0, backoff=0.01, **options)


def decompositions() -> dict[str, Decomposition]:
    found = {}
    for i in range(N_IMAGES):
        prompt = f"prompt {i}"
        semantic = [
            {
                "question_type": "semantic",
                "question": f"Is object {i}.{q} there?",
                "is_valid": True,
                "tag": "Existence",
            }
            for q in range(N_QUESTIONS - 1)
        ]
        quality = [
            {
                "question_type": "quality",
                "question": f"Is image {i} sharp?",
                "is_valid": True,
                "tag": "Clarity",
            }
        ]
        found[prompt] = Decomposition.from_dict(
            {"prompt": prompt, "semantic_questions": semantic, "quality_questions": quality}
        )
    return found


def test_dvreward_verifies_many_images_concurrently_with_sequential_results() -> None:
    images = [image(i) for i in range(N_IMAGES)]
    prompts = [f"prompt {i}" for i in range(N_IMAGES)]
    results, peaks = {}, {}
    for workers in (1, None):  # one image at a time, then the default: as many as the judge takes
        with JudgeServer(ScriptedJudgeModel(), latency=0.05) as server:
            reward = DVReward(judge_for(server, concurrency=32), questions=decompositions(), workers=workers)
            results[workers] = [v.to_dict() for v in reward.verify(images, prompts)]
            peaks[workers] = server.peak_in_flight
    assert results[None] == results[1]
    assert all(r["reward"] is not None and r["n_failed"] == 0 for r in results[None])
    assert len({r["reward"] for r in results[None]}) == N_IMAGES  # each image got its own answers
    assert peaks[1] <= N_QUESTIONS < peaks[None]  # questions of several images were in flight together


def test_a_judged_benchmark_scores_images_concurrently_with_sequential_records() -> None:
    items, samples, images = {}, [], []
    for i in range(N_IMAGES):
        props = [Proposition(1, (0,), "entity - whole (cat)", f"Is there cat {i}?")]
        props += [
            Proposition(q, (1,), "attribute - color (cat, red)", f"Is cat {i} red {q}?") for q in (2, 3)
        ]
        items[str(i)] = DPGItem(str(i), f"prompt {i}", props)
        samples.append(Sample(str(i), f"prompt {i}", {"item_id": str(i)}))
        images.append(image(100 + i))
    records, peaks = {}, {}
    for concurrency in (1, 16):
        with JudgeServer(ScriptedJudgeModel(), latency=0.05) as server:
            scorer = DPGScorer(judge_for(server, concurrency=concurrency), items)
            assert scorer.parallel_images() == concurrency
            records[concurrency] = scorer.score_images(samples, images)
            peaks[concurrency] = server.peak_in_flight
    assert records[16] == records[1] and not any(r["failed"] for r in records[1])
    assert peaks[1] == 1 and peaks[16] > 3  # more than one image's 3 questions at once


def test_judge_map_keeps_order_and_local_judges_run_one_at_a_time() -> None:
    class Local:
        pass

    class Remote:
        parallel_requests = 4

    assert (
        parallel_requests(Local()) == 1 and parallel_requests(None) == 1 and parallel_requests(Remote()) == 4
    )
    assert judge_map(Remote(), lambda x: x * x, list(range(20))) == [x * x for x in range(20)]


def test_yes_no_cache_keys_name_any_other_layout_and_keep_old_keys_valid() -> None:
    judge = OpenAIJudge("m", base_url="http://127.0.0.1:9/v1")
    question, image_hash = "Is it red?", "ab" * 32
    old_style = cache_key(
        kind="yes_probability",
        **judge._key_base(),
        prompt=hashlib.sha256(question.encode()).hexdigest(),
        images=[image_hash],
        decoding=judge._yes_no_options(),
    )
    assert judge._yes_no_key(image_hash, question) == old_style  # image first, as every key was written
    reversed_layout = tuple(reversed(YES_NO_LAYOUT))
    assert layout_key(YES_NO_LAYOUT) == {} and layout_key(reversed_layout) == {"layout": "question+image"}
    assert cache_key(a=1, **layout_key(reversed_layout)) != cache_key(a=1, **layout_key())
    # chat keys hash the messages themselves, so the order of their parts is in the key
    first = user_message("Hi", image(0))
    assert first["content"][0]["type"] == "image"
    flipped = {"role": "user", "content": list(reversed(first["content"]))}
    assert messages_fingerprint([first]) != messages_fingerprint([flipped])


def test_judge_map_runs_items_of_one_key_one_after_another_in_order() -> None:
    """Items sharing a key (the same image) wait for the earlier ones, so they see what those cached."""

    class Remote:
        parallel_requests = 8

    running: dict[str, int] = {}
    overlap, together, lock = [], [], threading.Lock()

    def work(item: tuple[str, int]) -> int:
        with lock:
            running[item[0]] = running.get(item[0], 0) + 1
            overlap.append(running[item[0]])
            together.append(sum(running.values()))
        time.sleep(0.05)
        with lock:
            running[item[0]] -= 1
        return item[1]

    items = [(key, i) for i, key in enumerate("abacbaadcb")]
    assert judge_map(Remote(), work, items, key=lambda item: item[0]) == list(range(len(items)))
    assert max(overlap) == 1 and max(together) > 1  # other keys were in progress at the same time
    assert judge_map(Remote(), work, items, workers=1) == list(range(len(items)))

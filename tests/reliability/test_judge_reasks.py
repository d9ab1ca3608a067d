"""Only complete, parsed replies are cached: a re-ask after an unparseable reply reaches the judge again,
in this run and in the next one (it used to be served the same unparseable reply from the cache)."""

from __future__ import annotations

import importlib.util

import pytest
from judged_helpers import ScriptedVLM
from PIL import Image

from evalkit.benchmarks.base import Sample
from evalkit.benchmarks.wise.scorer import WISEScorer
from evalkit.judges.cache import ReplyCache

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed", allow_module_level=True)

GOOD = "Consistency: 2\nRealism: 1\nAesthetic Quality: 1"
SAMPLE = Sample(
    "1", "a red apple", {"prompt_id": 1, "category": "Cultural", "subcategory": "x", "explanation": "e"}
)


def _judge(server, cache):
    from evalkit.judges.openai_http import OpenAIJudge

    return OpenAIJudge(
        "scripted-judge", base_url=server.url, cache=cache, max_retries=0, concurrency=1, backoff=0.0
    )


def _scorer(judge, attempts: int = 3) -> WISEScorer:
    return WISEScorer(judge, "system", "{Prompt} {Explanation}", max_attempts=attempts)


def test_a_reask_is_a_real_request_and_only_the_parsed_reply_is_cached(tmp_path):
    from evalkit.judges.server import JudgeServer

    replies = iter(["I cannot rate this.", "Still no numbers.", GOOD])
    vlm = ScriptedVLM("scripted-judge", lambda text, images: next(replies))
    cache = ReplyCache(tmp_path / "cache.sqlite")
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    with JudgeServer(vlm) as server:
        record = _scorer(_judge(server, cache)).score_one(SAMPLE, image)
        assert server.requests == 3 and record["attempts"] == 3 and not record["failed"]
        assert len(cache) == 1  # the two unparseable replies were not stored
        # the next run gets the parsed reply from the cache: no request at all
        again = _scorer(_judge(server, ReplyCache(tmp_path / "cache.sqlite"))).score_one(SAMPLE, image)
        assert server.requests == 3 and again["consistency"] == record["consistency"]


def test_a_failed_record_is_recovered_by_a_later_run_against_a_healthy_judge(tmp_path):
    from evalkit.judges.server import JudgeServer

    state = {"healthy": False}
    vlm = ScriptedVLM("scripted-judge", lambda text, images: GOOD if state["healthy"] else "no idea")
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    with JudgeServer(vlm) as server:
        first = _scorer(_judge(server, tmp_path / "c.sqlite"), attempts=2).score_one(SAMPLE, image)
        assert first["failed"] and server.requests == 2
        state["healthy"] = True
        second = _scorer(_judge(server, tmp_path / "c.sqlite"), attempts=2).score_one(SAMPLE, image)
        assert not second["failed"] and server.requests == 3

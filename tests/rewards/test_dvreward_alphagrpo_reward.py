"""`--reward dvreward@alphagrpo`: the official reward function over a real OpenAI-compatible HTTP judge."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.dvreward.alphagrpo import REQUEST, AlphaGRPODVReward
from evalkit.errors import EvalkitError
from evalkit.rewards.factory import build_reward

if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("openai") is None:
    pytest.skip("transformers, torchvision and openai are needed", allow_module_level=True)

from evalkit.judges import load_judge  # noqa: E402
from evalkit.judges.messages import image_to_data_url  # noqa: E402
from evalkit.judges.server import JudgeServer  # noqa: E402

PROMPTS = ["a red cat", "two blue cars"]
QUESTIONS = {
    "a red cat": (["Is there a cat?", "Is the cat red?"], ["Is the image sharp?"]),
    "two blue cars": (["Are there two cars?"], ["Is the lighting natural?", "Is it free of artifacts?"]),
}


def _questions_file(tmp_path):
    path = tmp_path / "questions.jsonl"
    lines = []
    for prompt, (semantic, quality) in QUESTIONS.items():
        lines.append({
            "prompt": prompt,
            "semantic_questions": [{"question_type": "semantic", "question": q, "is_valid": True, "tag": "Existence"} for q in semantic],
            "quality_questions": [{"question_type": "quality", "question": q, "is_valid": True, "tag": "Texture"} for q in quality],
        })  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in PROMPTS]


@pytest.fixture(scope="module")
def server(tiny_judge):
    with JudgeServer(tiny_judge, max_logprobs=1024) as running:
        yield running


def _judge(server):
    return load_judge(f"openai:{server.model_name}", url=server.url, max_retries=0, backoff=0.01)


def test_http_reward_equals_the_official_function_called_directly(server, tmp_path):
    judge, sent = _judge(server), []
    send = judge.chat_completion
    judge.chat_completion = lambda **request: sent.append(request) or send(**request)
    reward = build_reward("dvreward@alphagrpo", {"questions": str(_questions_file(tmp_path))}, judge=judge)
    got = reward.score_with_details(_images(), PROMPTS, [{} for _ in PROMPTS])
    assert len(sent) == sum(len(s) + len(q) for s, q in QUESTIONS.values())  # one request per question
    assert all({k: r[k] for k in REQUEST} == REQUEST for r in sent)  # the official decoding
    assert all(r["messages"][1]["content"][0]["type"] == "image_url" for r in sent)

    def direct(**request):  # the same server's completion, without HTTP or evalkit's judge client
        return server.complete(request)

    official = AlphaGRPODVReward(complete=direct, model=server.model_name)
    for (value, details), image, prompt in zip(got, _images(), PROMPTS, strict=True):
        semantic, quality = QUESTIONS[prompt]
        meta = {"semantic_questions": semantic, "quality_questions": quality}
        expected, expected_meta = official.score_one(image_to_data_url(image), meta)
        assert value is not None and value == pytest.approx(expected, abs=1e-9)
        assert details["semantic_scores"] == pytest.approx(expected_meta["semantic_scores"], abs=1e-9)
        assert len(details["quality_scores"]) == len(quality)


@pytest.mark.parametrize("compat", ["evalkit", "official"])
def test_unusable_replies_abstain_by_default_and_score_zero_with_compat_official(server, tmp_path, compat):
    options = {"questions": str(_questions_file(tmp_path)), "compat": compat}
    reward = build_reward("dvreward@alphagrpo", options, judge=_judge(server))
    server.faults.clear()
    server.faults.add("refusal", times=10)  # the first question fails all 10 official attempts
    try:
        (value, details), = reward.score_with_details(_images()[:1], PROMPTS[:1], [{}])
    finally:
        server.faults.clear()
    if compat == "evalkit":
        assert value is None and "unanswered" in details["failure"]
    else:
        assert details["semantic_scores"][0] == 0.0 and value is not None


def test_needs_an_openai_compatible_judge_and_questions(tmp_path, tiny_judge):
    with pytest.raises(EvalkitError, match="OpenAI-compatible"):
        build_reward("dvreward@alphagrpo", {"judge": "tiny"})
    with pytest.raises(EvalkitError, match="OpenAI-compatible"):
        build_reward("dvreward@alphagrpo", {}, judge=tiny_judge)
    with pytest.raises(EvalkitError, match="compat"):
        build_reward("dvreward@alphagrpo", {"judge": "openai:m", "judge_url": "http://127.0.0.1:9", "compat": "x"})

"""DVReward on real judges: the tiny local Qwen2-VL (prefix reuse) and the HTTP judge's text fallback."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from PIL import Image

import evalkit  # noqa: F401 - installs the torchvision compat hook before transformers loads
from evalkit.dvreward import VERIFIER_SYSTEM_PROMPT, Decomposition, Question, verify
from evalkit.rewards.dvreward import DVReward

if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("openai") is None:
    pytest.skip("transformers, torchvision and openai are needed", allow_module_level=True)

from evalkit.judges.hf import HFJudge  # noqa: E402
from evalkit.judges.openai_http import OpenAIJudge  # noqa: E402
from evalkit.judges.server import JudgeServer  # noqa: E402
from evalkit.testing.judges import tiny_qwen2vl_path  # noqa: E402

DECOMPOSITION = Decomposition(
    "a red cat next to a blue car",
    [
        Question("Is there a red cat in the image?", "semantic", "Attribute"),
        Question("Are there two cars?", "semantic", "Count"),
        Question("Is the apple on the left of the cup?", "semantic", "Spatial"),
    ],
    [
        Question("Is the text readable?", "quality", "Legibility"),
        Question("Is the image sharp?", "quality", "Texture"),
    ],
)


@pytest.fixture(scope="module")
def tiny_judge() -> HFJudge:
    path = tiny_qwen2vl_path()
    return HFJudge.from_pretrained(
        str(path), name="tiny-qwen2vl", device="cpu", system_prompt=VERIFIER_SYSTEM_PROMPT
    )


def noise(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (72, 96, 3), dtype=np.uint8))


def test_local_judge_runs_the_prefix_once_per_image_and_matches_full_forwards(tiny_judge: HFJudge) -> None:
    tiny_judge.stats.clear()
    reward = DVReward(tiny_judge, questions={DECOMPOSITION.prompt: DECOMPOSITION})
    (result,) = reward.verify([noise(1)], [DECOMPOSITION.prompt])
    assert tiny_judge.stats["prefix_forwards"] == 1 and tiny_judge.stats["full_forwards"] == 0
    scores = [q.score for q in result.questions]
    reference = [tiny_judge.p_yes_full_forward(noise(1), q.question) for q in result.questions]
    assert scores == pytest.approx(reference, abs=1e-4)
    sc, pq = sum(scores[:3]) / 3, sum(scores[3:]) / 2
    assert (result.sc, result.pq) == pytest.approx((sc, pq))
    assert result.reward == pytest.approx(math.sqrt(sc * pq))
    assert reward.config()["judge"]["system_prompt"] == VERIFIER_SYSTEM_PROMPT


def test_http_judge_without_logprobs_falls_back_to_the_decoded_answer(tiny_judge: HFJudge) -> None:
    with JudgeServer(tiny_judge, max_logprobs=1024) as server:
        judge = OpenAIJudge(
            "tiny-qwen2vl", base_url=server.url, top_logprobs=1024, max_retries=0, concurrency=1
        )
        server.faults.add("text_yes", times=2)  # a server without logprob support answering "Yes."
        result = verify(judge, noise(2), DECOMPOSITION)
    first_two = [(q.score, q.source) for q in result.questions[:2]]
    assert first_two == [(1.0, "text"), (1.0, "text")]
    assert {q.source for q in result.questions[2:]} == {"logprobs"}
    assert result.n_text_fallback == 2 and result.reward is not None

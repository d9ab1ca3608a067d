"""Every registered reward, built by the one factory with tiny components, scores a batch: one float or
None (an abstention, never a fake 0) per image, in order."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from evalkit import registry
from evalkit.rewards.factory import build_reward

NAMES = sorted(registry.REWARDS)
IMAGES = [Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))]
PROMPTS = ["a red square", "a blue square"]
# DVReward reads each prompt's questions from the sample metadata (AlphaGRPO's training JSONL layout)
METADATA = [
    {"semantic_questions": [f"Is the square {c}?"], "quality_questions": ["Is the image sharp?"]}
    for c in ("red", "blue")
]


def _tiny_options(name: str) -> dict:
    if registry.REWARDS[name].needs_judge:
        return {"judge": "tiny"}
    return {"tiny": True} if name in ("pickscore", "hpsv3") else {}


# rewards that send their own requests to an OpenAI-compatible server get one, backed by the tiny judge
HTTP_ONLY = ("dvreward@alphagrpo",)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_reward_contract(name, request):
    if name in HTTP_ONLY:
        from evalkit.judges import load_judge
        from evalkit.judges.server import JudgeServer

        with JudgeServer(request.getfixturevalue("tiny_judge"), max_logprobs=1024) as server:
            judge = load_judge(f"openai:{server.model_name}", url=server.url, max_retries=0)
            values = build_reward(name, {}, judge=judge).score(IMAGES, PROMPTS, METADATA)
    else:
        values = build_reward(name, _tiny_options(name)).score(IMAGES, PROMPTS, METADATA)
    assert len(values) == len(IMAGES)
    assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values), values

"""UnifiedReward (CodeGoat24/UnifiedReward) pointwise image-generation score, on any Judge.

The judge (a UnifiedReward checkpoint served by vLLM/SGLang/transformers behind the Judge interface) is asked
to rate the image against its caption and to put a 1-5 score after "Final Score:". The reward is that score
divided by 5 (0.2-1.0), as Flow-GRPO trains with it. A reply without a parseable score abstains (`None`);
Flow-GRPO would have used 0.0, which turns a judge hiccup into a strongly negative advantage.

Prompt variants (the judge checkpoint must match its training prompt):
* ``"official"``: UnifiedReward 1.0 pointwise prompt (``qwen_point_score_image_generation.py``).
* ``"flow_grpo"``: Flow-GRPO's variant for ``UnifiedReward-7b-v1.5`` (no element-extraction sentence,
  ``<image>`` prefix, images resized to 512x512, temperature 0).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from PIL import Image

from evalkit.judges.base import Judge, JudgeFailure, ask
from evalkit.rewards.base import judge_each_image

FINAL_SCORE = re.compile(r"Final Score:\s*([1-5](?:\.\d+)?)")

_CRITERIA = (
    "You are given a text caption and a generated image based on that caption. Your task is to evaluate "
    "this image based on two key criteria:\n1. Alignment with the Caption: Assess how well this image aligns "
    "with the provided caption. Consider the accuracy of depicted objects, their relationships, and "
    "attributes as described in the caption.\n2. Overall Image Quality: Examine the visual quality of this "
    "image, including clarity, detail preservation, color accuracy, and overall aesthetic appeal.\n"
)
_TASK = "Your task is provided as follows:\nText Caption: [{prompt}]"
PROMPTS = {
    "official": _CRITERIA
    + "Extract key elements from the provided text caption, evaluate their presence in the generated image "
    "using the format: 'element (type): value' (where value=0 means not generated, and value=1 means "
    "generated), and assign a score from 1 to 5 after 'Final Score:'.\n" + _TASK,
    "flow_grpo": "<image>\n"
    + _CRITERIA
    + "Based on the above criteria, assign a score from 1 to 5 after 'Final Score:'.\n"
    + _TASK,
}


def parse_final_score(reply: str) -> float | None:
    """The first "Final Score: x" with x in 1-5 (decimals allowed), or None."""
    match = FINAL_SCORE.search(reply)
    return float(match.group(1)) if match else None


class UnifiedRewardScorer:
    """The pointwise score per image (None on failure, each reason appended to `failures` in image order).

    A batch's images are scored concurrently through `judge_map` (`workers=None`: as many as the judge
    takes requests at once, an HTTP judge's concurrency; a local judge stays one image at a time)."""

    name = "unifiedreward"

    def __init__(
        self,
        judge: Judge,
        prompt: Literal["official", "flow_grpo"] = "official",
        normalize: bool = True,
        resize: int | None = None,
        decoding: dict[str, Any] | None = None,
        workers: int | None = None,
    ):
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {sorted(PROMPTS)}")
        self.judge = judge
        self.prompt = prompt
        self.normalize = normalize
        self.resize = resize if resize is not None else (512 if prompt == "flow_grpo" else None)
        default_decoding = {"temperature": 0.0} if prompt == "flow_grpo" else {}
        self.decoding = {**default_decoding, **(decoding or {})}
        self.workers = workers  # images in progress at once; None: the judge's parallel_requests
        self.failures: list[str] = []

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prompt": self.prompt,
            "normalize": self.normalize,
            "resize": self.resize,
            "judge": self.judge.config(),
            "decoding": self.decoding,
        }

    def messages(self, image: Image.Image, prompt: str) -> list[dict[str, Any]]:
        if self.resize:
            image = image.convert("RGB").resize((self.resize, self.resize))
        text = PROMPTS[self.prompt].format(prompt=prompt)
        return [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}
        ]

    def score_one(self, image: Image.Image, prompt: str) -> float | None:
        return self._score_one(image, prompt, self.failures)

    def _score_one(self, image: Image.Image, prompt: str, failures: list[str]) -> float | None:
        try:
            # an unparseable reply is not cached: scoring this image again asks the judge again
            reply = ask(self.judge, self.messages(image, prompt), _require_final_score, **self.decoding)
        except JudgeFailure as exc:
            failures.append(f"judge: {exc.reason}")
            return None
        value = parse_final_score(reply)
        if value is None:
            failures.append(f"unparseable: {reply[:200]!r}")
            return None
        return value / 5.0 if self.normalize else value

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[float | None]:
        values, failures = judge_each_image(self.judge, self._score_one, images, prompts, self.workers)
        self.failures.extend(failures)
        return values


def _require_final_score(text: str) -> None:
    if parse_final_score(text) is None:
        raise ValueError("no 'Final Score' in the reply")

"""VIEScore (TIGER-AI-Lab/VIEScore) for text-to-image, on any Judge.

Two judge calls per image: semantic consistency (SC, one 0-10 score) and perceptual quality (PQ, naturalness
and artifacts, two scores). ``SC = min(SC list)``, ``PQ = min(PQ list)``, ``O = sqrt(SC * PQ)`` (0-10).

Replies are read by GEdit-Bench's VIEScore parser (``evalkit.benchmarks.gedit.parse``, the official
``mllm_output_to_dict`` rules) with ``strict=True``: where the official code would *guess a random score*
(second unparseable reply), or crash later (string, negative or missing scores), this scorer re-asks and
then abstains (`None`): a made-up score must never become a reward.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from PIL import Image

from evalkit.benchmarks.gedit.parse import min_score, parse_reply
from evalkit.judges.base import Judge, JudgeFailure, ask
from evalkit.rewards.base import judge_each_image

# Prompt texts of the official t2i protocol (vie_prompts.py, 0-shot), joined with "\n" as upstream does.
# Kept byte-exact, trailing spaces included: they are the protocol, not prose.
CONTEXT = (
    "You are a professional digital artist. You will have to evaluate the effectiveness of the AI-generated "
    "image(s) based on given rules.\n"
    "All the input images are AI-generated. All human in the images are AI-generated too. so you need not "
    "worry "
    "about the privacy confidentials.\n"
    "\n"
    "You will have to give your output in this way (Keep your reasoning concise and short.):\n"
    "{\n"
    '"score" : [...],\n'
    '"reasoning" : "..."\n'
    "}"
)
ONE_IMAGE_GEN_RULE = (
    "RULES:\n"
    "\n"
    "The image is an AI-generated image according to the text prompt.\n"
    "The objective is to evaluate how successfully the image has been generated.\n"
)
T2I_RULE_SC = (
    "From scale 0 to 10: \n"
    "A score from 0 to 10 will be given based on the success in following the prompt. \n"
    "(0 indicates that the AI generated image does not follow the prompt at all. 10 indicates the AI "
    "generated "
    "image follows the prompt perfectly.)\n"
    "\n"
    "Put the score in a list such that output score = [score].\n"
    "\n"
    "Text Prompt: <prompt>\n"
)
RULE_PQ = (
    "RULES:\n"
    "\n"
    "The image is an AI-generated image.\n"
    "The objective is to evaluate how successfully the image has been generated.\n"
    "\n"
    "From scale 0 to 10: \n"
    "A score from 0 to 10 will be given based on image naturalness. \n"
    "(\n"
    "    0 indicates that the scene in the image does not look natural at all or give a unnatural feeling "
    "such as "
    "wrong sense of distance, or wrong shadow, or wrong lighting. \n"
    "    10 indicates that the image looks natural.\n"
    ")\n"
    "A second score from 0 to 10 will rate the image artifacts. \n"
    "(\n"
    "    0 indicates that the image contains a large portion of distortion, or watermark, or scratches, or "
    "blurred "
    "faces, or unusual body parts, or subjects not harmonized. \n"
    "    10 indicates the image has no artifacts.\n"
    ")\n"
    "Put the score in a list such that output score = [naturalness, artifacts]\n"
)

SC_PROMPT = "\n".join([CONTEXT, ONE_IMAGE_GEN_RULE, T2I_RULE_SC])
PQ_PROMPT = "\n".join([CONTEXT, RULE_PQ])


def _check_score(reply: str) -> None:
    """Raise ValueError for a reply without a usable score (re-asked, never cached)."""
    if not parse_reply(reply, strict=True).ok:
        raise ValueError("no score in the reply")


class VIEScoreScorer:
    """VIEScore t2i on a Judge; returns O (default), SC or PQ on the 0-10 scale (0-1 with normalize=True),
    None on failure (each reason appended to `failures`, in image order).

    A batch's images are scored concurrently through `judge_map` (`workers=None`: as many as the judge
    takes requests at once, an HTTP judge's concurrency; a local judge stays one image at a time); an
    image's SC and PQ calls stay in order, so a failed SC still spares its PQ call."""

    name = "viescore"

    def __init__(
        self,
        judge: Judge,
        component: Literal["O", "SC", "PQ"] = "O",
        attempts: int = 2,
        decoding: dict[str, Any] | None = None,
        normalize: bool = False,
        workers: int | None = None,
    ):
        if component not in ("O", "SC", "PQ"):
            raise ValueError("component must be 'O', 'SC' or 'PQ'")
        self.judge = judge
        self.component = component
        self.attempts = max(1, attempts)
        self.decoding = dict(decoding or {})
        self.normalize = normalize  # True: divide by 10 (AlphaGRPO's viescore reward is O / 10)
        self.workers = workers  # images in progress at once; None: the judge's parallel_requests
        self.failures: list[str] = []

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "attempts": self.attempts,
            "normalize": self.normalize,
            "judge": self.judge.config(),
            "decoding": self.decoding,
        }

    @staticmethod
    def messages(image: Image.Image, text: str) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}
        ]

    def _ask(self, image: Image.Image, text: str, failures: list[str]) -> float | None:
        """Ask up to `attempts` times (the official code re-asks once); the min score, or None (the
        reasons appended to `failures`)."""
        for _ in range(self.attempts):
            try:
                reply = ask(self.judge, self.messages(image, text), _check_score, **self.decoding)
            except JudgeFailure as exc:
                failures.append(f"judge: {exc.reason}")
                return None
            parsed = parse_reply(reply, strict=True)
            if parsed.ok:
                return float(min_score(parsed.data, strict=True))
            failures.append(f"unparseable: {reply[:200]!r}")
        return None

    def evaluate(self, image: Image.Image, prompt: str) -> dict[str, float | None]:
        return self._evaluate(image, prompt, self.failures)

    def _evaluate(self, image: Image.Image, prompt: str, failures: list[str]) -> dict[str, float | None]:
        text = SC_PROMPT.replace("<prompt>", prompt)
        sc = self._ask(image, text, failures) if self.component != "PQ" else None
        if self.component == "O" and sc is None:
            return {"SC": None, "PQ": None, "O": None}  # O abstains anyway: spare the PQ call
        pq = self._ask(image, PQ_PROMPT, failures) if self.component != "SC" else None
        o = math.sqrt(sc * pq) if sc is not None and pq is not None else None
        return {"SC": sc, "PQ": pq, "O": o}

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[float | None]:
        def component(image: Image.Image, prompt: str, failures: list[str]) -> float | None:
            return self._evaluate(image, prompt, failures)[self.component]  # PQ shared by a repeated image

        values, failures = judge_each_image(self.judge, component, images, prompts, self.workers)
        self.failures.extend(failures)
        return [v / 10.0 if self.normalize and v is not None else v for v in values]

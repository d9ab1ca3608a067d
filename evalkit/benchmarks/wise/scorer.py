"""WISE per-sample scorer: one judge request per image, re-asked while a score is missing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Sample, SampleScorer
from evalkit.benchmarks.wise.aggregate import wiscore
from evalkit.benchmarks.wise.data import PROTOCOLS, VARIANTS
from evalkit.benchmarks.wise.parse import (
    LEGACY_KEYS,
    out_of_range,
    parse_legacy_reply,
    parse_verified_reply,
    reply_accepted,
    required_keys,
)
from evalkit.errors import EvalkitError
from evalkit.judges.base import Judge, JudgeFailure, ask, judge_map

MAX_ATTEMPTS = 3  # MAX_EXTRACT_RETRIES of the official evaluators


def build_user_text(template: str, prompt: str, explanation: str) -> str:
    """Fill the two fields by plain replacement (the texts contain other braces)."""
    return template.replace("{Prompt}", prompt).replace("{Explanation}", explanation)


class WISEScorer(SampleScorer):
    """One chat request per image; re-asks (up to 3 attempts) while a required score is missing."""

    def __init__(
        self,
        judge: Judge,
        system: str,
        user_template: str,
        protocol: str = "wise@legacy",
        max_attempts: int = MAX_ATTEMPTS,
        max_tokens: int | None = None,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown WISE protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        self.judge, self.system, self.user_template = judge, system, user_template
        self.protocol, self.max_attempts = protocol, max_attempts
        self.max_tokens = max_tokens or VARIANTS[protocol].max_tokens

    def config(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "judge": self.judge.config(),
            "max_attempts": self.max_attempts,
            **self.decoding(),
        }

    def decoding(self) -> dict[str, Any]:
        return {"temperature": 0.0, "max_tokens": self.max_tokens}

    def messages(self, sample: Sample, image: Image.Image) -> list[dict[str, Any]]:
        text = build_user_text(self.user_template, sample.prompt, sample.metadata["explanation"])
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "image": image}]},
        ]

    def parse(self, reply: str) -> dict[str, float]:
        return parse_legacy_reply(reply) if self.protocol == "wise@legacy" else parse_verified_reply(reply)

    def check_reply(self, reply: str) -> None:
        """Raise ValueError for a reply this protocol cannot score (it is then re-asked, never cached)."""
        scores = self.parse(reply)
        if not reply_accepted(scores, self.protocol) or out_of_range(scores, self.protocol):
            raise ValueError("reply without the required scores in range")

    def score_one(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        base = {
            "prompt_id": sample.metadata["prompt_id"],
            "category": sample.metadata["category"],
            "subcategory": sample.metadata["subcategory"],
        }
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = ask(self.judge, self.messages(sample, image), self.check_reply, **self.decoding())
            except JudgeFailure as e:
                return {**base, "failed": True, "reason": e.reason, "attempts": attempt}
            scores = self.parse(reply)
            if not reply_accepted(scores, self.protocol):
                problem = f"missing {[k for k in required_keys(self.protocol) if k not in scores]}"
            elif out_of_range(scores, self.protocol):
                problem = f"out of range {out_of_range(scores, self.protocol)}"
            else:
                return {
                    **base,
                    "failed": False,
                    **self.record_scores(scores),
                    "attempts": attempt,
                    "reply": reply,
                }
        reason = f"unusable judge reply after {self.max_attempts} attempts ({problem})"
        return {**base, "failed": True, "attempts": self.max_attempts, "reason": reason}

    def record_scores(self, scores: Mapping[str, float]) -> dict[str, float]:
        if self.protocol == "wise@legacy":
            c, r, a = (scores[k] for k in LEGACY_KEYS)
            return {"consistency": c, "realism": r, "aesthetic_quality": a, "wiscore": wiscore(c, r, a)}
        return {"score": scores["score"], "wiscore": scores["score"]}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        # samples are independent: an HTTP judge gets several in flight, records as from the plain loop
        pairs = list(zip(samples, images, strict=True))
        return judge_map(self.judge, lambda pair: self.score_one(*pair), pairs)

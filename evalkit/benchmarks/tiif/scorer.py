"""TIIF-Bench per-sample scorer: all questions of a sample in one judge request."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Sample, SampleScorer
from evalkit.benchmarks.tiif.data import PLACEHOLDER, PROTOCOLS, TEMPLATE_FILES
from evalkit.benchmarks.tiif.parse import OutputFormatError, count_correct, parse_yes_no
from evalkit.errors import EvalkitError
from evalkit.judges.base import Judge, JudgeFailure, ask, judge_map


def build_user_text(template: str, questions: Iterable[str]) -> str:
    """The official substitution: questions joined by newlines."""
    return template.replace(PLACEHOLDER, "\n".join(questions))


def _stable_int(*parts: object) -> int:
    """A process-independent integer seed from its parts (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


class TIIFScorer(SampleScorer):
    """Asks the judge all questions of a sample in one chat request and parses the yes/no lines."""

    def __init__(
        self,
        judge: Judge,
        system: str,
        templates: tuple[str, ...],
        protocol: str = "tiif",
        seed: int = 0,
        max_attempts: int = 3,
        max_tokens: int = 1024,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown TIIF protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if max_attempts < 1:
            raise EvalkitError("max_attempts must be >= 1")
        self.judge, self.system, self.templates = judge, system, templates
        self.protocol, self.seed = protocol, seed
        self.max_attempts, self.max_tokens = max_attempts, max_tokens

    @property
    def official(self) -> bool:
        return self.protocol == "tiif@official"

    def config(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "judge": self.judge.config(),
            "seed": self.seed,
            "temperature": self.decoding(0)["temperature"],
            "max_attempts": self.max_attempts,
            "max_tokens": self.max_tokens,
            "templates": "random of 3" if self.official else TEMPLATE_FILES[0],
        }

    def decoding(self, attempt: int) -> dict[str, Any]:
        """Official: temperature 1.0; default: greedy with a fixed seed."""
        if self.official:
            return {"temperature": 1.0, "max_tokens": self.max_tokens, "seed": self.seed + attempt}
        return {"temperature": 0.0, "max_tokens": self.max_tokens, "seed": self.seed}

    def template_index(self, sample: Sample, attempt: int) -> int:
        """Default: template 0. Official: a random template per request, seeded by sample and attempt."""
        if not self.official:
            return 0
        return random.Random(_stable_int(self.seed, sample.id, attempt)).randrange(len(self.templates))

    def messages(self, image: Image.Image, questions: list[str], template_index: int) -> list[dict[str, Any]]:
        text = build_user_text(self.templates[template_index], questions)
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "image": image}]},
        ]

    def score_one(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        meta = sample.metadata
        questions, gt = list(meta["questions"]), list(meta["answers"])
        base = {
            "dimension": meta["dimension"],
            "length": meta["length"],
            "line_idx": meta["line_idx"],
            "questions": questions,
            "gt_answers": gt,
        }
        errors: list[str] = []
        for attempt in range(self.max_attempts):
            t = self.template_index(sample, attempt)
            try:
                reply = ask(
                    self.judge,
                    self.messages(image, questions, t),
                    lambda text: parse_yes_no(text, len(questions)),
                    **self.decoding(attempt),
                )
            except JudgeFailure as e:
                return {**base, "failed": True, "reason": e.reason, "attempts": attempt + 1}
            try:
                preds = parse_yes_no(reply, len(questions))
            except OutputFormatError as e:
                errors.append(f"OutputFormatError: {e}")
                continue
            correct = count_correct(gt, preds)
            return {
                **base,
                "failed": False,
                "preds": preds,
                "correct": correct,
                "total": len(questions),
                "template": TEMPLATE_FILES[t],
                "attempts": attempt + 1,
                "reply": reply,
            }
        reason = f"unparseable after {self.max_attempts} attempts: {errors[-1]}"
        return {**base, "failed": True, "reason": reason, "attempts": self.max_attempts}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        # samples are independent: an HTTP judge gets several in flight, records as from the plain loop
        pairs = list(zip(samples, images, strict=True))
        return judge_map(self.judge, lambda pair: self.score_one(*pair), pairs)

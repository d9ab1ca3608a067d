"""GEdit-Bench per-sample scorer: VIEScore SC and PQ requests per edited image, the official retry loop."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Sample, SampleScorer
from evalkit.benchmarks.gedit.parse import Parsed, min_score, parse_reply
from evalkit.errors import EvalkitError
from evalkit.judges.base import Judge, JudgeFailure, ask, judge_map


@dataclass(frozen=True)
class VieOutcome:
    """One sample's VIEScore result; status is ok | exception | random_fallback | unparseable."""

    status: str
    sc: float | None = None
    pq: float | None = None
    o: float | None = None
    reason: str | None = None
    sc_requests: int = 0
    pq_requests: int = 0
    sc_reply: str | None = None
    pq_reply: str | None = None
    official_random: tuple[str, ...] = ()


def _check_usable(text: str) -> None:
    """Raise ValueError for a reply the official loop would re-ask (so it is not cached)."""
    if not parse_reply(text).usable:
        raise ValueError("no score in the reply")


def vie_evaluate(ask_sc: Callable[[], str], ask_pq: Callable[[], str], rounds: int = 2) -> VieOutcome:
    """The official VIEScore.evaluate loop, with failures instead of random scores or endless retries.

    Both requests are re-sent while either answer is unparseable (the answers of the last round are
    used). Every round parses normally; ``official_random`` names the calls of a later round that the
    official give-up parsing would have replaced by a random score. Raises JudgeFailure from ask_*.
    """
    sc = pq = Parsed()
    sc_reply = pq_reply = ""
    official_random: tuple[str, ...] = ()
    n = 0
    for n in range(1, rounds + 1):  # noqa: B007 - n is the request count afterwards
        sc_reply, pq_reply = ask_sc(), ask_pq()
        sc, pq = parse_reply(sc_reply), parse_reply(pq_reply)
        if n > 1:
            replies = (("SC", sc_reply), ("PQ", pq_reply))
            official_random = tuple(
                k for k, text in replies if parse_reply(text, give_up=True).random_fallback
            )
        if sc.usable and pq.usable:
            break
    common = {
        "sc_requests": n,
        "pq_requests": n,
        "sc_reply": sc_reply,
        "pq_reply": pq_reply,
        "official_random": official_random,
    }
    if not (sc.usable and pq.usable):
        if official_random:
            which = "/".join(official_random)
            reason = f"unparseable {which} reply (the official code substitutes a random score)"
            return VieOutcome("random_fallback", reason=reason, **common)
        reason = f"unparseable judge reply after {n} rounds (the official loop re-asks forever)"
        return VieOutcome("unparseable", reason=reason, **common)
    if sc.rate_limited or pq.rate_limited:
        return VieOutcome("exception", reason="ValueError: rate_limit_exceeded", **common)
    try:
        sc_value, pq_value = min_score(sc.data), min_score(pq.data)
    except ValueError as e:
        return VieOutcome("exception", reason=f"invalid score: {e}", **common)
    return VieOutcome("ok", sc=sc_value, pq=pq_value, o=math.sqrt(sc_value * pq_value), **common)


def _jpeg_roundtrip(image: Image.Image) -> Image.Image:
    """The official GPT wrapper sends JPEG-encoded images; the judge sees the same pixels here."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


class GEditScorer(SampleScorer):
    """VIEScore SC + PQ requests per edited image, on any Judge."""

    def __init__(
        self,
        judge: Judge,
        sc_template: str,
        pq_prompt: str,
        rounds: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 1400,
        jpeg: bool = True,
    ):
        self.judge, self.sc_template, self.pq_prompt = judge, sc_template, pq_prompt
        self.rounds, self.temperature, self.max_tokens, self.jpeg = rounds, temperature, max_tokens, jpeg

    def config(self) -> dict[str, Any]:
        return {
            "judge": self.judge.config(),
            "rounds": self.rounds,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "jpeg": self.jpeg,
            "prompts": "VIEScore tie 0shot",
        }

    def _ask(self, text: str, images: list[Image.Image]) -> Callable[[], str]:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        content += [{"type": "image", "image": im} for im in images]
        messages = [{"role": "user", "content": content}]
        decoding = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return lambda: ask(self.judge, messages, _check_usable, **decoding)

    def evaluate(self, source: Image.Image, edited: Image.Image, instruction: str) -> VieOutcome:
        """SC on [source, edited-resized-to-source], PQ on the edited image."""
        source = source.convert("RGB")
        edited = edited.convert("RGB").resize(source.size)
        if self.jpeg:
            source, edited = _jpeg_roundtrip(source), _jpeg_roundtrip(edited)
        sc_text = self.sc_template.replace("<instruction>", instruction)
        return vie_evaluate(
            self._ask(sc_text, [source, edited]), self._ask(self.pq_prompt, [edited]), self.rounds
        )

    def score_one(self, sample: Sample, edited: Image.Image) -> dict[str, Any]:
        meta = sample.metadata
        base = {
            "task_type": meta["task_type"],
            "key": meta["key"],
            "language": meta["language"],
            "intersection": bool(meta["intersection"]),
        }
        if sample.input_image is None:
            return {**base, "failed": True, "reason": "sample has no source image"}
        with Image.open(sample.input_image) as src:
            source = src.convert("RGB")
        try:
            out = self.evaluate(source, edited, sample.prompt)
        except JudgeFailure as e:
            return {**base, "failed": True, "reason": e.reason}
        replies = {"sc_reply": out.sc_reply, "pq_reply": out.pq_reply, "rounds": out.sc_requests}
        if out.status != "ok":
            return {**base, "failed": True, "reason": out.reason, "status": out.status, **replies}
        if out.official_random:  # the official code would have used a random number here instead
            replies["official_would_randomize"] = list(out.official_random)
        return {**base, "failed": False, "SC": out.sc, "PQ": out.pq, "O": out.o, **replies}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        # samples are independent: an HTTP judge gets several in flight, records as from the plain loop
        pairs = list(zip(samples, images, strict=True))
        return judge_map(self.judge, lambda pair: self.score_one(*pair), pairs)

"""Reward `dvreward@alphagrpo`: DVReward exactly as AlphaGRPO's online reward function computes it.

The protocol itself (requests, top-5 log-probs, token cleaning, 10 attempts, SC/PQ aggregation) lives in
`evalkit.dvreward.alphagrpo`; this is its Scorer for `evalkit score --reward`, SRR and the trainers. The
questions come from the same places as for `dvreward` (a sample's metadata, or an AlphaGRPO-format JSONL
file looked up by prompt). The official requests need a server that returns log-probs, so the judge must
be OpenAI-compatible (vLLM, SGLang, OpenAI). By default a question that stays unanswered after the 10
attempts makes the image abstain; `compat=official` scores it 0.0 as the official code does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL import Image

from evalkit.dvreward.alphagrpo import PROTOCOL, SOURCE, AlphaGRPODVReward, Compat
from evalkit.errors import EvalkitError
from evalkit.judges.messages import image_to_data_url
from evalkit.rewards.dvreward import DVReward, QuestionSource


class AlphaGRPOProtocolReward:
    """Scorer over an HTTP judge; details per image carry the official meta keys."""

    name = PROTOCOL

    def __init__(
        self,
        judge: Any,
        *,
        questions: QuestionSource = None,
        method: str = "geometric",
        compat: Compat = "evalkit",
        use_logprobs: bool = True,
    ):
        complete = getattr(judge, "chat_completion", None)
        if complete is None:
            raise EvalkitError(
                f"reward '{PROTOCOL}' sends the official requests (top-5 log-probs) to an OpenAI-compatible "
                "server: use --judge openai:<model> --judge-url URL (e.g. a vLLM server), not "
                f"{getattr(judge, 'name', type(judge).__name__)!r}"
            )
        try:
            self.official = AlphaGRPODVReward(
                complete=complete, model=judge.model, method=method, use_logprobs=use_logprobs, compat=compat
            )
        except ValueError as error:
            raise EvalkitError(f"{PROTOCOL}: {error}") from None
        self.judge = judge
        self._questions = DVReward(judge, questions=questions)  # the same question lookup as `dvreward`

    def config(self) -> dict[str, Any]:
        return {
            "reward": PROTOCOL,
            "source": SOURCE,
            "method": self.official.method,
            "use_logprobs": self.official.use_logprobs,
            "compat": self.official.compat,
            "questions": self._questions.questions_source,
            "judge": self.judge.config(),
        }

    def check_prompts(self, pairs: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Refuse before any work when a prompt has no questions (it could only abstain)."""
        self._questions.check_prompts(pairs)

    def score_with_details(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[tuple[float | None, dict[str, Any]]]:
        metadata = metadata if metadata is not None else [{} for _ in images]
        results = []
        for image, prompt, meta in zip(images, prompts, metadata, strict=True):
            try:
                decomposition = self._questions.decomposition_for(prompt, meta)
            except ValueError as error:
                results.append((None, {"failure": f"malformed questions: {error}"}))
                continue
            if decomposition is None:
                results.append((None, {"failure": "no questions for this prompt"}))
                continue
            try:
                results.append(self.official.score_one(image_to_data_url(image), decomposition.to_dict()))
            except ValueError as error:  # no semantic or no quality question (evalkit mode)
                results.append((None, {"failure": str(error)}))
        return results

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]:
        return [reward for reward, _ in self.score_with_details(images, prompts, metadata)]

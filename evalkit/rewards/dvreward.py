"""DVReward as a Scorer, for `evalkit score`, SRR gating and the GRPO trainer.

Questions for an image come from its metadata (a "dvreward" entry in the AlphaGRPO line format, or the
line's own "semantic_questions"/"quality_questions" keys, as in AlphaGRPO's training JSONL) or else from a
questions file looked up by the exact prompt. An image without questions, or whose questions the judge
could not answer, gets None (abstain), never 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.dvreward.format import Decomposition, index_by_prompt, read_jsonl
from evalkit.dvreward.verify import METHODS, VERIFIER_SYSTEM_PROMPT, Verification, verify
from evalkit.errors import EvalkitError
from evalkit.judges.base import Judge, judge_map

QuestionSource = str | os.PathLike | Mapping[str, Decomposition] | None


def _load_questions(questions: QuestionSource) -> dict[str, Decomposition]:
    if questions is None:
        return {}
    if isinstance(questions, Mapping):
        return dict(questions)
    return index_by_prompt(read_jsonl(Path(questions)))


def decomposition_from_metadata(prompt: str, metadata: Mapping[str, Any]) -> Decomposition | None:
    """The questions carried by a sample's metadata, if any. Raises ValueError for malformed ones."""
    if isinstance(metadata.get("dvreward"), Mapping):
        return Decomposition.from_dict({"prompt": prompt, **metadata["dvreward"]})
    if "semantic_questions" in metadata or "quality_questions" in metadata:
        data = {
            "prompt": prompt,
            "semantic_questions": metadata.get("semantic_questions", []),
            "quality_questions": metadata.get("quality_questions", []),
        }
        return Decomposition.from_dict(data)
    return None


class DVReward:
    """Decompositional verifiable reward over any Judge (local HF with prefix reuse, or HTTP)."""

    def __init__(
        self,
        judge: Judge,
        *,
        questions: QuestionSource = None,
        method: str = "geometric",
        allow_partial: bool = False,
        text_fallback: bool = True,
        workers: int | None = None,
        name: str = "dvreward",
    ):
        if method not in METHODS:
            raise ValueError(f"unknown DVReward method {method!r}; known: {', '.join(METHODS)}")
        self.judge = judge
        self.questions = _load_questions(questions)
        self.questions_source = (
            None if questions is None or isinstance(questions, Mapping) else str(questions)
        )
        self.method = method
        self.allow_partial = allow_partial
        self.text_fallback = text_fallback
        # images verified concurrently; None: as many as the judge takes requests at once (an HTTP judge's
        # concurrency, 1 for a local judge, which batches an image's questions on its prefix cache instead)
        self.workers = workers
        self.name = name

    def config(self) -> dict[str, Any]:
        return {
            "reward": self.name,
            "method": self.method,
            "allow_partial": self.allow_partial,
            "text_fallback": self.text_fallback,
            "questions": self.questions_source,
            "judge": self.judge.config(),
        }

    def check_prompts(self, pairs: list[tuple[str, Mapping[str, Any]]]) -> None:
        """Refuse (EvalkitError) before any work when some prompt has no questions: it could only abstain."""
        check_dvreward_questions(self.questions, pairs)

    def decomposition_for(
        self, prompt: str, metadata: Mapping[str, Any] | None = None
    ) -> Decomposition | None:
        found = decomposition_from_metadata(prompt, metadata or {})
        return found if found is not None else self.questions.get(prompt)

    def verify(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[Verification]:
        """Full details per image (per-question scores, SC, PQ, failure reason)."""
        metadata = metadata if metadata is not None else [{} for _ in images]
        if not len(images) == len(prompts) == len(metadata):
            raise ValueError(f"{len(images)} images, {len(prompts)} prompts, {len(metadata)} metadata")
        jobs = list(zip(images, prompts, metadata, strict=True))
        # every image's questions go to the judge's shared request pool: N images x Q questions in flight
        return judge_map(self.judge, lambda job: self._verify_one(*job), jobs, workers=self.workers)

    def _verify_one(self, image: Image.Image, prompt: str, meta: Mapping[str, Any]) -> Verification:
        try:
            decomposition = self.decomposition_for(prompt, meta)
        except ValueError as error:
            return Verification(None, None, None, self.method, (), f"malformed questions: {error}")
        if decomposition is None:
            return Verification(None, None, None, self.method, (), "no questions for this prompt")
        return verify(
            self.judge,
            image,
            decomposition,
            method=self.method,
            allow_partial=self.allow_partial,
            text_fallback=self.text_fallback,
        )

    def score_with_details(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]] | None = None
    ) -> list[tuple[float | None, dict[str, Any]]]:
        """(reward, details dict) per image; SRR stores the details with each round."""
        return [(v.reward, v.to_dict()) for v in self.verify(images, prompts, metadata)]

    def score(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> list[float | None]:
        return [v.reward for v in self.verify(images, prompts, metadata)]


def build_dvreward(
    judge: str | Judge,
    *,
    judge_url: str | None = None,
    questions: QuestionSource = None,
    method: str = "geometric",
    allow_partial: bool = False,
    cache_path: str | os.PathLike | None = None,
    system_prompt: str | None = VERIFIER_SYSTEM_PROMPT,
    workers: int | None = None,
    **judge_options: Any,
) -> DVReward:
    """Registry factory: a judge spec (hf:..., openai:..., or `tiny` in tests) or a built Judge, and a
    questions file. There is no default judge: a random one would turn into numbers.

    A judge spec is loaded with AlphaGRPO's auditor system prompt unless `system_prompt=None`.
    """
    if isinstance(judge, str):
        from evalkit.judges import load_judge

        if system_prompt is not None:
            judge_options.setdefault("system_prompt", system_prompt)
        judge = load_judge(
            judge, url=judge_url, cache_path=Path(cache_path) if cache_path else None, **judge_options
        )
    return DVReward(judge, questions=questions, method=method, allow_partial=allow_partial, workers=workers)


def check_dvreward_questions(questions: Any, prompts: Iterable[tuple[str, Mapping[str, Any]]] | None) -> None:
    """DVReward scores only prompts it has questions for; without any it would abstain on everything."""
    index: Mapping[str, Any] = {}
    if isinstance(questions, Mapping):
        index = questions
    elif questions:
        path = Path(str(questions)).expanduser()
        if not path.is_file():
            raise EvalkitError(f"DVReward questions file {path} does not exist")
        index = index_by_prompt(read_jsonl(path))
    pairs = list(prompts) if prompts is not None else None
    if pairs is None:
        if not index:
            raise EvalkitError(
                "DVReward needs questions: pass questions=FILE.jsonl "
                "(make one with `evalkit dvreward decompose`) or prompts that carry their questions"
            )
        return
    missing = []
    for prompt, meta in pairs:
        try:
            found = decomposition_from_metadata(prompt, meta or {})
        except ValueError as error:
            raise EvalkitError(f"malformed DVReward questions for prompt '{prompt[:60]}': {error}") from None
        if found is None and prompt not in index:
            missing.append(prompt)
    if missing:
        raise EvalkitError(
            f"DVReward has no questions for {len(missing)} of {len(pairs)} prompts (first: '{missing[0][:60]}'); "
            "pass questions=FILE.jsonl covering them (`evalkit dvreward decompose`)"
        )

"""Decompose a prompt into DVReward questions with any chat LLM (an OpenAI-compatible server, or a local judge).

Three calls per prompt, each reply parsed strictly (JSON only, optionally in one ```json fence):
1. semantic questions, DSG-style: one atomic yes/no question per fact the prompt states;
2. review: each question validated (is it strictly required by the prompt?) and tagged into one of the ten
   semantic categories; invalid questions are kept with is_valid=false (never verified), and a draft with
   no valid question at all is redrafted;
3. quality questions over the valid semantic ones, one aspect each, phrased so that "yes" means good.
A reply that does not parse is retried (another seed) and, after `max_attempts`, the prompt fails with a
recorded reason: it never yields an empty or guessed decomposition. Finished decompositions are cached in
SQLite under the prompt, the LLM's identity and these instructions, so re-running costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from evalkit.dvreward.format import QUALITY_ASPECTS, SEMANTIC_TAGS, Decomposition, Question
from evalkit.judges.base import Judge, JudgeFailure
from evalkit.judges.cache import ReplyCache, cache_key, open_cache

T = TypeVar("T")
Progress = Callable[[int], None]

SEMANTIC_INSTRUCTIONS = """You turn a text-to-image prompt into atomic yes/no verification questions, in the \
spirit of a Davidsonian scene graph: every fact the prompt states becomes one question about the image.

Rules:
- Cover each entity, each attribute of an entity, each count, each action or pose, each spatial relation, \
every piece of text that must appear, the style, the viewpoint, the setting, and anything the prompt says \
must be absent.
- One fact per question. Ask only about what the prompt states; never add details.
- Each question must be answerable from the image alone with yes or no, and "yes" must mean that the \
prompt was followed.
- Ask about an entity's existence before asking about its attributes or relations.

Reply with JSON only, no other text:
{"questions": [{"fact": "<the atomic fact>", "question": "<yes/no question>"}]}"""

REVIEW_INSTRUCTIONS = """You review yes/no verification questions written for a text-to-image prompt.

For each question decide:
1. "is_valid": true only if the prompt strictly requires what the question checks. It is false when the \
question checks an optional element, a detail the prompt never mentions (a colour, a style, a background), \
or one reading of a word that could be shown in more than one way (a noun that also names an activity may \
be drawn as the object alone, so a question demanding the activity is invalid).
2. "tag": the one category the question checks, exactly one of:
   Style (medium, genre, image format), Environment (background, setting, weather, time of day),
   Viewpoint (camera angle, shot size, lens, framing), Existence (an object is present, regardless of \
number), Count (how many), Attribute (colour, material, shape, size, clothing), Action (movement, pose, \
activity), Spatial (relative position, depth, contact such as holding or wearing), Text (written words, \
signs, logos), Negative (something must be absent).

Reply with JSON only, one entry per question in the given order, the question copied verbatim:
{"results": [{"question": "<question>", "is_valid": true, "tag": "<category>"}]}"""

QUALITY_INSTRUCTIONS = """You write visual-quality checks for an image generated from a prompt. You get the \
prompt and its verified semantic questions; write yes/no questions about how well the image renders them.

Rules:
- "Yes" must always mean good quality: ask "Is the image sharp and free of blur?", never "Is the image \
blurry?".
- One aspect per question; split structure and legibility of one object into two questions.
- Check universal quality (sound structure, plausible materials, no artifacts), but never demand an \
attribute the prompt does not state.
- The prompt is the standard: if it asks for something impossible (a floating stone), ask whether that is \
shown convincingly, not whether the scene obeys everyday physics.
- A purely relational fact (X left of Y) needs no quality question.
- "aspect" is exactly one of: Geometry (shape, structure and perspective of man-made objects), Anatomy \
(bodies, hands and faces of people and animals), Texture (materials, fine detail, noise), Coherence (no \
melting, fusion or detached parts), Lighting (consistent light, shadows, reflections), Physics (gravity, \
ground contact, motion, fluids), Legibility (text spelled right, clean glyphs), Aesthetics (overall appeal, \
the requested style, no digital glitches).

Reply with JSON only, no other text:
{"questions": [{"question": "<yes/no question>", "aspect": "<aspect>"}]}"""

_INSTRUCTIONS_SHA = hashlib.sha256(
    "\n".join([SEMANTIC_INSTRUCTIONS, REVIEW_INSTRUCTIONS, QUALITY_INSTRUCTIONS]).encode()
).hexdigest()[:16]
_FENCE = re.compile(r"\A```(?:json)?[ \t]*\n(.*)\n```\Z", re.DOTALL)
# Judge config keys that do not change what the LLM says (transport, bookkeeping).
_VOLATILE_CONFIG_KEYS = (
    "served_snapshots",
    "concurrency",
    "min_concurrency",
    "adaptive_concurrency",
    "timeout",
    "max_retries",
    "base_url",
    "api_key_env",
)


def default_cache_path() -> Path:
    from evalkit.paths import cache_dir

    return cache_dir() / "dvreward" / "decompositions.sqlite"


# ---------------------------------------------------------------------------------------------- parsing
def load_json_reply(text: str) -> Any:
    """The JSON value of a reply that is JSON only, or JSON in a single ```json fence. Raises ValueError."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"reply is not JSON ({error.msg} at char {error.pos})") from None


def _items(data: Any, key: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f'reply must be an object with a "{key}" list')
    return data[key]


def _question_text(item: Any) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("question"), str):
        raise ValueError('each entry needs a "question" string')
    text = " ".join(item["question"].split())
    if not text.endswith("?"):
        raise ValueError(f"not a question: {text[:60]!r}")
    return text


def _canonical(name: Any, allowed: Sequence[str], what: str) -> str:
    """The allowed spelling of a category name (case-insensitive); anything else is an error."""
    lookup = {a.lower(): a for a in allowed}
    if not isinstance(name, str) or name.strip().lower() not in lookup:
        raise ValueError(f"{what} {name!r} is not one of {', '.join(allowed)}")
    return lookup[name.strip().lower()]


def parse_semantic_reply(text: str) -> list[str]:
    """Candidate semantic questions (duplicates dropped, order kept). Raises ValueError."""
    questions = [_question_text(item) for item in _items(load_json_reply(text), "questions")]
    if not questions:
        raise ValueError("no questions")
    return list(dict.fromkeys(questions))


def parse_review_reply(text: str, questions: list[str]) -> list[tuple[bool, str]]:
    """(is_valid, tag) per question, in order; the reply must echo every question. Raises ValueError."""
    results = _items(load_json_reply(text), "results")
    if len(results) != len(questions):
        raise ValueError(f"{len(results)} results for {len(questions)} questions")
    reviews = []
    for expected, item in zip(questions, results, strict=True):
        if _question_text(item) != expected:
            raise ValueError(f"result does not echo the question {expected[:60]!r}")
        if not isinstance(item.get("is_valid"), bool):
            raise ValueError('"is_valid" must be true or false')
        reviews.append((item["is_valid"], _canonical(item.get("tag"), SEMANTIC_TAGS, "tag")))
    return reviews


def parse_quality_reply(text: str) -> list[tuple[str, str]]:
    """(question, aspect) pairs (duplicates dropped). Raises ValueError."""
    pairs = [
        (_question_text(item), _canonical(item.get("aspect"), QUALITY_ASPECTS, "aspect"))
        for item in _items(load_json_reply(text), "questions")
    ]
    return list(dict.fromkeys(pairs))


# ---------------------------------------------------------------------------------------------- LLM calls
def llm_identity(llm: Judge) -> dict[str, Any]:
    """What of the LLM's configuration changes its replies: part of the cache key."""
    config = dict(llm.config())
    for key in _VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    return config


class Decomposer:
    """Prompt -> Decomposition through a chat LLM, with a per-prompt SQLite cache."""

    def __init__(
        self,
        llm: Judge,
        *,
        cache: ReplyCache | str | os.PathLike | None = None,
        temperature: float = 0.3,
        max_tokens: int = 2048,
        max_attempts: int = 3,
    ):
        self.llm = llm
        self.cache = open_cache(cache)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_attempts = max_attempts

    def config(self) -> dict[str, Any]:
        return {
            "llm": llm_identity(self.llm),
            "instructions_sha": _INSTRUCTIONS_SHA,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def key(self, prompt: str) -> str:
        return cache_key(kind="dvreward-decomposition", prompt=prompt, **self.config())

    def decompose(self, prompt: str) -> Decomposition:
        """The cached decomposition or a fresh one. Raises JudgeFailure (step and reason)."""
        key = self.key(prompt)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Decomposition.from_dict(hit)
        semantic = self._semantic(prompt)
        valid = [q.question for q in semantic if q.is_valid]
        pairs = self._ask(
            "quality questions",
            QUALITY_INSTRUCTIONS,
            {"prompt": prompt, "semantic_questions": valid},
            parse_quality_reply,
        )
        quality = [Question(text, "quality", aspect) for text, aspect in pairs]
        result = Decomposition(prompt, semantic, quality)
        if self.cache is not None:
            self.cache.put(key, result.to_dict())
        return result

    def _semantic(self, prompt: str) -> list[Question]:
        """Candidates, validated and tagged; redrafted (new seeds) while none of them is valid."""
        for draft in range(self.max_attempts):
            candidates = self._ask(
                "semantic questions",
                SEMANTIC_INSTRUCTIONS,
                {"prompt": prompt},
                parse_semantic_reply,
                first_seed=draft * self.max_attempts,
            )
            reviews = self._ask(
                "review",
                REVIEW_INSTRUCTIONS,
                {"prompt": prompt, "questions": candidates},
                lambda text, asked=candidates: parse_review_reply(text, asked),
                first_seed=draft * self.max_attempts,
            )
            semantic = [
                Question(text, "semantic", tag, valid)
                for text, (valid, tag) in zip(candidates, reviews, strict=True)
            ]
            if any(q.is_valid for q in semantic):
                return semantic
        raise JudgeFailure(f"review: no semantic question was valid in {self.max_attempts} drafts")

    def decompose_many(
        self, prompts: Sequence[str], *, workers: int = 4, progress: Progress | None = None
    ) -> list[Decomposition | JudgeFailure]:
        """One result per prompt, in order; `original_index` is the prompt's position."""

        def one(index: int) -> Decomposition | JudgeFailure:
            try:
                found = self.decompose(prompts[index])
                found.extra["original_index"] = index
                return found
            except JudgeFailure as failure:
                return failure
            finally:
                if progress is not None:
                    progress(1)

        if workers <= 1 or len(prompts) <= 1:
            return [one(i) for i in range(len(prompts))]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(prompts))))

    def _ask(
        self,
        step: str,
        instructions: str,
        payload: dict[str, Any],
        parse: Callable[[str], T],
        first_seed: int = 0,
    ) -> T:
        """One LLM step; an unparseable reply is retried with another seed, then reported as a failure."""
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": json.dumps(payload, ensure_ascii=False)},
        ]
        last = "no attempt"
        for attempt in range(self.max_attempts):
            try:
                text = self.llm.chat(
                    messages,
                    validate=parse,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    seed=first_seed + attempt,
                )
                return parse(text)
            except JudgeFailure as failure:
                last = failure.reason
            except ValueError as error:  # a backend that does not run `validate` itself
                last = f"unparseable reply: {error}"
        raise JudgeFailure(f"{step}: {last} (after {self.max_attempts} attempts)")


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts from a .txt file (one per line) or a .jsonl file with a "prompt" key per line."""
    from evalkit.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"no prompts file {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return [line.strip() for line in lines if line.strip()]
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            prompts.append(json.loads(line)["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: expected a JSON object with a 'prompt'") from None
    return prompts

"""The AlphaGRPO decomposition JSONL format: one prompt per line with its semantic and quality questions.

    {"prompt": "...",
     "semantic_questions": [{"question_type": "semantic", "question": "...", "is_valid": true, "tag": "Count"}],
     "quality_questions":  [{"question_type": "quality",  "question": "...", "is_valid": true, "tag": "Texture"}],
     "original_index": 0}

Reading is strict about structure (a malformed line is an error with its line number, never skipped) and
keeps unknown keys, so files written by other tools round-trip unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import DataError

SEMANTIC_TAGS = (
    "Style",
    "Environment",
    "Viewpoint",
    "Existence",
    "Count",
    "Attribute",
    "Action",
    "Spatial",
    "Text",
    "Negative",
)
QUALITY_ASPECTS = (
    "Geometry",
    "Anatomy",
    "Texture",
    "Coherence",
    "Lighting",
    "Physics",
    "Legibility",
    "Aesthetics",
)
QUESTION_TYPES = ("semantic", "quality")
_QUESTION_KEYS = ("question_type", "question", "is_valid", "tag")


@dataclass(frozen=True)
class Question:
    """One yes/no question; `tag` is a semantic category or a quality aspect."""

    question: str
    question_type: str
    tag: str
    is_valid: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_type": self.question_type,
            "question": self.question,
            "is_valid": self.is_valid,
            "tag": self.tag,
        }

    @classmethod
    def from_dict(cls, data: Any, expected_type: str) -> Question:
        """Raises ValueError naming the first problem."""
        if not isinstance(data, dict):
            raise ValueError("a question must be a JSON object")
        missing = [key for key in _QUESTION_KEYS if key not in data]
        if missing:
            raise ValueError(f"question lacks {', '.join(missing)}")
        if data["question_type"] != expected_type:
            raise ValueError(f"question_type {data['question_type']!r} in the {expected_type} list")
        if not isinstance(data["question"], str) or not data["question"].strip():
            raise ValueError("question text must be a non-empty string")
        if not isinstance(data["is_valid"], bool):
            raise ValueError("is_valid must be true or false")
        if not isinstance(data["tag"], str) or not data["tag"].strip():
            raise ValueError("tag must be a non-empty string")
        return cls(data["question"], expected_type, data["tag"], data["is_valid"])


@dataclass
class Decomposition:
    """A prompt with its questions; `extra` keeps other keys of the line (e.g. original_index)."""

    prompt: str
    semantic_questions: list[Question]
    quality_questions: list[Question]
    extra: dict[str, Any] = field(default_factory=dict)

    def valid_semantic(self) -> list[Question]:
        """Only validated semantic questions are verified; invalid ones are kept for the record."""
        return [q for q in self.semantic_questions if q.is_valid]

    def valid_quality(self) -> list[Question]:
        return [q for q in self.quality_questions if q.is_valid]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "semantic_questions": [q.to_dict() for q in self.semantic_questions],
            "quality_questions": [q.to_dict() for q in self.quality_questions],
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Decomposition:
        """Raises ValueError naming the first problem."""
        if not isinstance(data, dict):
            raise ValueError("a line must be a JSON object")
        if not isinstance(data.get("prompt"), str):
            raise ValueError("missing 'prompt' string")
        lists = {}
        for kind in QUESTION_TYPES:
            items = data.get(f"{kind}_questions")
            if not isinstance(items, list):
                raise ValueError(f"missing '{kind}_questions' list")
            try:
                lists[kind] = [Question.from_dict(item, kind) for item in items]
            except ValueError as error:
                raise ValueError(f"{kind}_questions: {error}") from None
        extra = {
            k: v for k, v in data.items() if k not in ("prompt", "semantic_questions", "quality_questions")
        }
        return cls(data["prompt"], lists["semantic"], lists["quality"], extra)


def parse_line(line: str) -> Decomposition:
    """One JSONL line; raises ValueError."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    return Decomposition.from_dict(data)


def read_jsonl(path: str | os.PathLike) -> list[Decomposition]:
    """All decompositions of a file, in order. Raises DataError with the line number of a bad line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no questions file {path}")
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append(parse_line(line))
        except ValueError as error:
            raise DataError(f"{path}:{number}: {error}") from None
    return found


def write_jsonl(path: str | os.PathLike, decompositions: Iterable[Decomposition]) -> None:
    """Write atomically (a reader never sees half a file)."""
    from evalkit.runs import atomic_write_bytes

    body = "".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in decompositions)
    atomic_write_bytes(Path(path), body.encode("utf-8"))


def index_by_prompt(decompositions: Iterable[Decomposition]) -> dict[str, Decomposition]:
    """Lookup by exact prompt text; a prompt listed twice with different questions is an error."""
    table: dict[str, Decomposition] = {}
    for item in decompositions:
        old = table.get(item.prompt)
        if old is not None and _questions(old) != _questions(item):
            raise DataError(f"prompt listed twice with different questions: {item.prompt[:80]!r}")
        table.setdefault(item.prompt, item)
    return table


def _questions(item: Decomposition) -> list[dict[str, Any]]:
    return [q.to_dict() for q in item.semantic_questions + item.quality_questions]

"""GenEval official aggregation (``summary_scores.py``) and the table columns as the paper names them."""

from __future__ import annotations

import json
from typing import Any

from evalkit.benchmarks.geneval.rules import TAGS

COLUMNS = {
    "single_object": "Single Obj.",
    "two_object": "Two Obj.",
    "counting": "Counting",
    "colors": "Colors",
    "position": "Position",
    "color_attr": "Color Attri.",
}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """summary_scores.py: per-tag image accuracy; overall = plain mean over the tags present.

    Tags are mapped by name (never by position). `complete` says whether all six tags are present.
    """
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, list[bool]] = {}
    for rec in records:
        by_tag.setdefault(rec["tag"], []).append(bool(rec["correct"]))
        key = rec["metadata"] if isinstance(rec["metadata"], str) else json.dumps(rec["metadata"])
        by_prompt.setdefault(key, []).append(bool(rec["correct"]))
    tasks = {
        tag: {"score": sum(v) / len(v), "n_correct": sum(v), "n_images": len(v)} for tag, v in by_tag.items()
    }
    n = sum(len(v) for v in by_tag.values())
    return {
        "tasks": tasks,
        "overall": sum(t["score"] for t in tasks.values()) / len(tasks) if tasks else None,
        "n_images": n,
        "n_prompts": len(by_prompt),
        "correct_images": sum(sum(v) for v in by_tag.values()) / n if n else None,
        "correct_prompts": sum(any(v) for v in by_prompt.values()) / len(by_prompt) if by_prompt else None,
        "complete": set(tasks) == set(TAGS),
    }

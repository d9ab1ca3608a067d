"""GenEval data and protocols: the 80 COCO class names and the validated evaluation metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit import data
from evalkit.benchmarks.geneval.rules import RELATIONS, TAGS
from evalkit.data import read_text_file
from evalkit.errors import DataError


def load_object_names(data_dir: Path) -> list[str]:
    path = data.require_file(data_dir, "geneval/object_names.txt", "geneval")
    names = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if len(names) != 80:
        raise DataError(f"{path}: expected the 80 COCO class names, found {len(names)}")
    return names


def _check_metadata(meta: Any, classnames: set[str]) -> str | None:
    """What is wrong with one evaluation_metadata line, or None."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("tag") not in TAGS:
        return f"unknown tag {meta.get('tag')!r}"
    if not isinstance(meta.get("prompt"), str):
        return "missing 'prompt'"
    clauses = meta.get("include")
    if not isinstance(clauses, list) or not clauses:
        return "missing 'include' list"
    for clause in clauses + list(meta.get("exclude", [])):
        if not isinstance(clause, dict) or clause.get("class") not in classnames:
            return f"unknown class in clause {clause!r}"
        if not isinstance(clause.get("count"), int) or clause["count"] < 1:
            return f"bad count in clause {clause!r}"
    for i, clause in enumerate(clauses):
        if "position" in clause:
            relation, target = clause["position"]
            if relation not in RELATIONS or not isinstance(target, int) or not 0 <= target < i:
                return f"bad position {clause['position']!r}"
    return None


def load_metadata(path: Path, classnames: list[str]) -> list[dict[str, Any]]:
    """Read and validate evaluation_metadata(.jsonl); the error names the file and line."""
    known = set(classnames)
    lines = []
    for lineno, meta in data.read_json_lines(path):
        problem = _check_metadata(meta, known)
        if problem:
            raise DataError(f"{path}:{lineno}: malformed GenEval metadata: {problem}")
        lines.append(meta)
    return lines

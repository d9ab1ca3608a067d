"""WISE official score-file mode: ``Calculate.py`` / ``calculate_verified.py`` on released score files,
including what they skip and when they refuse."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.benchmarks.wise.aggregate import weighted_overall, wiscore
from evalkit.benchmarks.wise.data import CATEGORIES, CATEGORY_ARG_CATEGORIES, VARIANTS, category_of
from evalkit.benchmarks.wise.parse import LEGACY_KEYS
from evalkit.errors import EvalkitError


def _scan_score_file(path: Path, protocol: str) -> tuple[dict[str, list[float]], set[int]] | None:
    """Scores per category and present ids of one official score file, skipping the lines the script
    skips; None where the script gives up on the whole file (unreadable, or a JSON line that is not an
    object, which raises outside its per-line handler)."""
    ranges = VARIANTS[protocol].ranges
    scores: dict[str, list[float]] = {}
    present: set[int] = set()
    try:
        with path.open(encoding="utf-8") as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            return None
        pid = data.get("prompt_id")
        if pid is None or not isinstance(pid, int):
            continue
        present.add(pid)
        value = _line_wiscore(data, protocol)
        cat = category_of(pid, ranges) if value is not None else None
        if cat is not None:
            scores.setdefault(cat, []).append(value)  # type: ignore[arg-type]
    return scores, present


def _line_wiscore(data: Mapping[str, Any], protocol: str) -> float | None:
    """WiScore of one score line, or None where the official script skips it for averaging."""
    if protocol == "wise@legacy":
        vals = [data.get(k) for k in LEGACY_KEYS]
        if not all(isinstance(v, int | float) for v in vals):
            return None
        return wiscore(*vals)  # type: ignore[arg-type]
    score = data.get("score")
    if not isinstance(score, int | float) or score not in (0, 1):
        return None
    return float(score)


def official_calculate(
    files: Sequence[Path | str], category: str = "all", protocol: str = "wise@legacy"
) -> dict[str, Any]:
    """The official aggregation of judge score files (``*_scores_results.jsonl``).

    Returns status (``ok`` | ``categories_only`` | ``aborted_missing_prompt_ids`` | ``no_valid_data``),
    category_scores, category_num_samples, overall_wiscore, per_file_reports and missing_prompt_ids.
    """
    if category not in CATEGORY_ARG_CATEGORIES:
        raise EvalkitError(f"unknown --category '{category}' (known: {', '.join(CATEGORY_ARG_CATEGORIES)})")
    ranges = VARIANTS[protocol].ranges
    single = category if len(files) == 1 else None
    results: list[tuple[str, dict[str, list[float]], set[int]]] = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            continue
        scanned = _scan_score_file(path, protocol)
        if scanned is None:
            continue
        scores, present = scanned
        if single and single != "all" and protocol == "wise@legacy":
            needed = {
                i for c in CATEGORY_ARG_CATEGORIES[single] for i in range(ranges[c][0], ranges[c][1] + 1)
            }
            if needed - present:
                continue  # the legacy script rejects the file
        results.append((str(file), scores, present))
    empty = {
        "category_scores": None,
        "category_num_samples": None,
        "overall_wiscore": None,
        "per_file_reports": None,
        "missing_prompt_ids": None,
    }
    if not results:
        return {**empty, "status": "no_valid_data"}
    all_ids = set(range(1, 1001))
    missing = sorted(all_ids - set().union(*(p for _, _, p in results))) if category == "all" else []
    if missing and protocol == "wise@legacy":
        return {**empty, "status": "aborted_missing_prompt_ids", "missing_prompt_ids": missing}
    merged: dict[str, list[float]] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name, scores, _ in results:
        reports[name] = {
            "average": {c: sum(v) / len(v) for c, v in scores.items() if v},
            "num_processed_samples": {c: len(v) for c, v in scores.items() if v},
        }
        for c, v in scores.items():
            merged.setdefault(c, []).extend(v)
    cat_scores = {c: sum(v) / len(v) for c, v in merged.items() if v}
    overall = None
    if category == "all" and all(c in cat_scores for c in CATEGORIES):
        overall = weighted_overall(cat_scores, protocol)
    return {
        "status": "ok" if overall is not None else "categories_only",
        "category_scores": cat_scores,
        "category_num_samples": {c: len(v) for c, v in merged.items() if v},
        "overall_wiscore": overall,
        "per_file_reports": reports,
        "missing_prompt_ids": missing or None,
    }

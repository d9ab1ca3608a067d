"""WISE official aggregation: WiScore per image, category means, the weighted overall."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evalkit.benchmarks.wise.data import BAGEL_UNWEIGHTED_KEY, CATEGORIES, COLUMN_NAMES, VARIANTS, category_of
from evalkit.errors import DataError


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    """Legacy per-image score in [0, 1]."""
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2


def weighted_overall(category_scores: Mapping[str, float], protocol: str) -> float:
    """The official weighted overall (same expression order as the official scripts)."""
    w = VARIANTS[protocol].weights
    total = 0.0
    for cat in CATEGORIES:
        total += w[cat] * category_scores[cat]
    return total


def aggregate_records(records: Iterable[Mapping[str, Any]], protocol: str) -> dict[str, Any]:
    """Category means, the official weighted overall (all 6 categories needed), BAGEL's unweighted mean."""
    variant = VARIANTS[protocol]
    per_cat: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    seen: set[int] = set()
    n_failed = 0
    for r in records:
        if r.get("failed"):
            n_failed += 1
            continue
        cat = category_of(int(r["prompt_id"]), variant.ranges)
        if cat is None:
            raise DataError(f"record with prompt_id {r['prompt_id']} outside the {protocol} id ranges")
        per_cat[cat].append(float(r["wiscore"]))
        seen.add(int(r["prompt_id"]))
    means = {c: (sum(v) / len(v) if v else None) for c, v in per_cat.items()}
    complete_cats = all(v is not None for v in means.values())
    overall = weighted_overall(means, protocol) if complete_cats else None  # type: ignore[arg-type]
    out: dict[str, Any] = {COLUMN_NAMES[c]: means[c] for c in CATEGORIES}
    out["Overall"] = overall
    if protocol == "wise@legacy":
        vals = list(means.values())
        out[BAGEL_UNWEIGHTED_KEY] = sum(vals) / len(vals) if complete_cats else None  # type: ignore[arg-type]
    expected = {i for lo, hi in variant.ranges.values() for i in range(lo, hi + 1)}
    out.update(
        {
            "n_scored": len(seen),
            "n_failed": n_failed,
            "n_missing": len(expected - seen),
            "category_num_samples": {c: len(v) for c, v in per_cat.items()},
            "protocol": protocol,
        }
    )
    return out

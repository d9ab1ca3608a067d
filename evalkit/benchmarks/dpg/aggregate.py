"""DPG-Bench official aggregation: cells into image scores, category points, the DPG score and table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

L1_COLUMNS = {
    "global": "Global",
    "entity": "Entity",
    "attribute": "Attribute",
    "relation": "Relation",
    "other": "Other",
}


COLUMNS = ["Global", "Entity", "Attribute", "Relation", "Other", "Overall"]


def combine_cells(cells: Sequence[Mapping[str, Any]], compat: str = "default") -> dict[str, Any]:
    """Image score = mean over cells; category points ({l2: [sum, count]}) as the compat mode defines:
    default = every cell after zeroing, official = the last cell before zeroing."""
    cells = sorted(cells, key=lambda c: c["k"])
    points: dict[str, list[float]] = {}
    used = cells if compat == "default" else cells[-1:]
    for cell in used:
        values = cell["zeroed"] if compat == "default" else cell["raw"]
        for l2, v in zip(cell["l2"], values, strict=True):
            acc = points.setdefault(l2, [0.0, 0])
            acc[0] += v
            acc[1] += 1
    scores = [c["cell_score"] for c in cells]
    return {"cell_scores": scores, "score": sum(scores) / len(scores), "category_points": points}


def category_scores(results: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """(L1, L2) category scores x100 pooled over the category points of scored images."""
    l2: dict[str, list[float]] = {}
    for r in results:
        for cat, (s, n) in r["category_points"].items():
            acc = l2.setdefault(cat, [0.0, 0])
            acc[0] += s
            acc[1] += n
    l1: dict[str, list[float]] = {}
    for cat, (s, n) in l2.items():
        acc = l1.setdefault(cat.split("-")[0].strip(), [0.0, 0])
        acc[0] += s
        acc[1] += n
    l1_scores = {c: 100 * s / n for c, (s, n) in l1.items()}
    return l1_scores, {c: 100 * s / n for c, (s, n) in sorted(l2.items())}


def summarize(results: Sequence[Mapping[str, Any]], n_failed: int = 0) -> dict[str, Any]:
    """DPG score (100 x mean image score), the table columns and the category scores of scored images."""
    l1, l2 = category_scores(results)
    overall = 100 * sum(r["score"] for r in results) / len(results) if results else None
    table: dict[str, float | None] = {name: l1.get(key) for key, name in L1_COLUMNS.items()}
    table["Overall"] = overall
    return {
        **table,
        "table": table,
        "l1_category_scores": l1,
        "l2_category_scores": l2,
        "n_images": len(results) + n_failed,
        "n_images_scored": len(results),
        "n_images_failed": n_failed,
    }


def group_records(
    records: Sequence[Mapping[str, Any]], compat: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-image results from scorer records, plus the ids of images with a failed cell.

    A record is either a whole grid (has ``cells``) or one cell of a sample (pipeline: one record per
    generated image, grouped by ``sample_id`` and ordered by ``k``). An image with any failed cell is
    counted as failed, never scored.
    """
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    by_sample: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        key = str(r.get("sample_id", r.get("item_id")))
        if "cells" in r and not r.get("failed"):
            results.append({"sample_id": key, **combine_cells(r["cells"], compat)})
        else:
            by_sample.setdefault(key, []).append(r)
    for key, cells in by_sample.items():
        if any(c.get("failed") for c in cells):
            failed.append(key)
            continue
        numbered = [{**c, "k": c.get("k", i)} for i, c in enumerate(cells)]
        results.append({"sample_id": key, **combine_cells(numbered, compat)})
    return results, failed

"""TIIF-Bench official aggregation: 9 groups from pooled dimension accuracies, the paper's table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from evalkit.benchmarks.tiif.data import DIMENSIONS, GROUPS, LENGTHS

# The script's own "following" overalls (means over dimensions, not over groups).
SCRIPT_OVERALLS: dict[str, tuple[str, ...]] = {
    "Basic_Following_Overall": GROUPS["Basic_Attribute"]
    + GROUPS["Basic_Relation"]
    + GROUPS["Basic_Reasoning"],
    "Advanced_Following_Overall": tuple(
        d for name, dims in GROUPS.items() if name.startswith("Advanced_") for d in dims
    ),
    "Real_World_Following_Overall": GROUPS["Real_Complex"],
}


# Paper table: column -> group (or derived average). Order as in the published table.
TABLE_COLUMNS: tuple[str, ...] = (
    "Overall",
    "Basic_Avg_mean_of_3_groups",
    "Basic_Attribute",
    "Basic_Relation",
    "Basic_Reasoning",
    "Advanced_Avg_mean_of_5_groups",
    "Advanced_Avg_script_mean_of_26_dims",
    "Attribute+Relation",
    "Attribute+Reasoning",
    "Relation+Reasoning",
    "Style",
    "Text",
    "Real_World",
)


_TABLE_GROUP = {
    "Basic_Attribute": "Basic_Attribute",
    "Basic_Relation": "Basic_Relation",
    "Basic_Reasoning": "Basic_Reasoning",
    "Attribute+Relation": "Advanced_Attribute+Relation",
    "Attribute+Reasoning": "Advanced_Attribute+Reasoning",
    "Relation+Reasoning": "Advanced_Relation+Reasoning",
    "Style": "Advanced_Style Control",
    "Text": "Advanced_Text Generation",
    "Real_World": "Real_Complex",
}


_ADVANCED_5 = ("Attribute+Relation", "Attribute+Reasoning", "Relation+Reasoning", "Style", "Text")


_BASIC_3 = ("Basic_Attribute", "Basic_Relation", "Basic_Reasoning")


def excel_round(x: float) -> float:
    """The official summary writes accuracies as 4-decimal strings and reads them back."""
    return float(f"{x:.4f}")


def _mean_skip_nan(values: Iterable[float | None]) -> float | None:
    """pandas-style mean: missing values skipped; None when nothing is left."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _mean_strict(values: Iterable[float | None]) -> float | None:
    """numpy-style mean: any missing value makes the result missing."""
    vals = list(values)
    if not vals or any(v is None or math.isnan(v) for v in vals):
        return None
    return sum(vals) / len(vals)  # type: ignore[arg-type]


def _x100(v: float | None) -> float | None:
    return None if v is None else v * 100


def summarize(counts: Mapping[tuple[str, str], tuple[int, int]], excel_rounding: bool) -> dict[str, Any]:
    """Official TIIF summary from pooled (correct, total) per (dimension, length).

    With ``excel_rounding`` the groups are computed from 4-decimal dimension values as the official
    scripts do; without it from exact accuracies. Missing dimensions are skipped in group means.
    """
    dimensions: dict[str, dict[str, dict[str, Any]]] = {}
    value: dict[tuple[str, str], float | None] = {}
    for (dim, length), (correct, total) in sorted(counts.items()):
        if total <= 0:
            continue
        acc = correct / total
        shown = excel_round(acc) if excel_rounding else acc
        dimensions.setdefault(dim, {})[length] = {
            "accuracy": acc,
            "total": total,
            "correct": correct,
            "excel_value": excel_round(acc),
        }
        value[(dim, length)] = shown

    def per_length(fn: Any) -> dict[str, Any]:
        return {length: fn(length) for length in LENGTHS}

    nine_groups = {
        g: per_length(lambda ln, dims=dims: _mean_skip_nan(value.get((d, ln)) for d in dims))
        for g, dims in GROUPS.items()
    }
    overall = per_length(lambda ln: _mean_skip_nan(nine_groups[g][ln] for g in GROUPS))
    script = {
        name: per_length(lambda ln, dims=dims: _mean_skip_nan(value.get((d, ln)) for d in dims))
        for name, dims in SCRIPT_OVERALLS.items()
    }
    all_values = [value.get((d, ln)) for d in DIMENSIONS for ln in LENGTHS]
    mean_all = _mean_skip_nan(all_values)
    excel_mean = None if mean_all is None else (excel_round(mean_all) if excel_rounding else mean_all)
    return {
        "dimensions": dimensions,
        "nine_groups": nine_groups,
        "overall": overall,
        "script_group_overalls": script,
        "excel_mean_accuracy": excel_mean,
        "published_table_x100": per_length(lambda ln: _table_row(nine_groups, overall, script, ln)),
    }


def _table_row(groups: dict, overall: dict, script: dict, length: str) -> dict[str, float | None]:
    """The paper's columns (x100) for one description length."""
    row: dict[str, float | None] = {"Overall": _x100(overall[length])}
    for column, group in _TABLE_GROUP.items():
        row[column] = _x100(groups[group][length])
    row["Basic_Avg_mean_of_3_groups"] = _mean_strict(row[c] for c in _BASIC_3)
    row["Advanced_Avg_mean_of_5_groups"] = _mean_strict(row[c] for c in _ADVANCED_5)
    row["Advanced_Avg_script_mean_of_26_dims"] = _x100(script["Advanced_Following_Overall"][length])
    return {c: row[c] for c in TABLE_COLUMNS}


def table_columns() -> list[str]:
    """Flat table column names: '<column> (<length>)', lengths interleaved as in the paper."""
    return [f"{c} ({ln})" for c in TABLE_COLUMNS for ln in LENGTHS]


def flat_table(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The published table of a summary as one flat {column: value x100} dict."""
    table = summary["published_table_x100"]
    return {f"{c} ({ln})": table[ln][c] for c in TABLE_COLUMNS for ln in LENGTHS}


def pooled_counts(
    records: Iterable[Mapping[str, Any]],
) -> tuple[dict[tuple[str, str], tuple[int, int]], int, int]:
    """(correct, total) per (dimension, length) over scored records, plus (n_scored, n_failed)."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    n_scored = n_failed = 0
    for r in records:
        if r.get("failed"):
            n_failed += 1
            continue
        key = (r["dimension"], r["length"])
        c, t = counts.get(key, (0, 0))
        counts[key] = (c + int(r["correct"]), t + int(r["total"]))
        n_scored += 1
    return counts, n_scored, n_failed

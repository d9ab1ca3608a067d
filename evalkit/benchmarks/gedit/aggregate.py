"""GEdit-Bench official aggregation: per-task means of SC, PQ and O, the unweighted mean over tasks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evalkit.benchmarks.gedit.data import SUBSETS, TASK_TYPES
from evalkit.errors import DataError, EvalkitError


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate_records(
    records: Iterable[Mapping[str, Any]], language: str = "en", intersection_only: bool = False
) -> dict[str, Any]:
    """Per-task means and the unweighted mean over the 11 task types (None where a task is empty)."""
    per_task: dict[str, list[Mapping[str, Any]]] = {t: [] for t in TASK_TYPES}
    for r in records:
        if r.get("failed") or r["language"] != language or (intersection_only and not r["intersection"]):
            continue
        if r["task_type"] not in per_task:
            raise DataError(f"unknown GEdit-Bench task type '{r['task_type']}'")
        per_task[r["task_type"]].append(r)
    tasks: dict[str, dict[str, float | None]] = {}
    for t, rows in per_task.items():
        sc = [float(r["SC"]) for r in rows]
        pq = [float(r["PQ"]) for r in rows]
        o = [math.sqrt(a * b) for a, b in zip(sc, pq, strict=True)]
        tasks[t] = {"SC": _mean(sc), "PQ": _mean(pq), "O": _mean(o), "n": len(rows)}
    overall: dict[str, float | None] = {}
    for m in ("SC", "PQ", "O"):
        vals = [tasks[t][m] for t in TASK_TYPES]
        overall[m] = None if any(v is None for v in vals) else sum(vals) / len(vals)  # type: ignore[misc]
    return {"per_task": tasks, "overall": overall}


def summarize(
    records: Sequence[Mapping[str, Any]], language: str = "en", subset: str = "fullset"
) -> dict[str, Any]:
    """Table columns G_SC, G_PQ, G_O (of the chosen subset), per-task O, both subsets in detail, counts."""
    if subset not in SUBSETS:
        raise EvalkitError(f"unknown subset '{subset}' (known: {', '.join(SUBSETS)})")
    full = aggregate_records(records, language)
    inter = aggregate_records(records, language, intersection_only=True)
    chosen = inter if subset == "intersection" else full
    table = {f"G_{m}": chosen["overall"][m] for m in ("SC", "PQ", "O")}
    out: dict[str, Any] = {**table, "table": table}
    out.update({f"O/{t}": chosen["per_task"][t]["O"] for t in TASK_TYPES})
    lang_records = [r for r in records if r.get("language") == language]
    n_failed = sum(1 for r in lang_records if r.get("failed"))
    out.update(
        {
            "fullset": full,
            "intersection": inter,
            "subset": subset,
            "language": language,
            "n_records": len(lang_records),
            "n_scored": len(lang_records) - n_failed,
            "n_failed": n_failed,
        }
    )
    return out

"""GEdit-Bench official outputs: the per-task CSVs of ``test_gedit_score.py`` read back as records."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from evalkit.benchmarks.gedit.data import TASK_TYPES
from evalkit.errors import DataError


def load_official_csv(path: Path, task_type: str) -> list[dict[str, Any]]:
    """Records from one per-task CSV written by the official test_gedit_score.py."""
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                sc, pq = float(row["sementics_score"]), float(row["quality_score"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}:{n}: missing or non-numeric sementics_score/quality_score") from None
            out.append(
                {
                    "task_type": task_type,
                    "language": row.get("instruction_language"),
                    "intersection": row.get("intersection_exist") == "True",
                    "SC": sc,
                    "PQ": pq,
                    "O": math.sqrt(sc * pq) if sc * pq >= 0 else None,
                    "failed": False,
                }
            )
    return out


def load_official_csvs(folder: Path, model: str) -> list[dict[str, Any]]:
    """All ``<model>_<task>_gpt_score.csv`` files of a folder as records (the statistics script's input)."""
    records = []
    for task in TASK_TYPES:
        path = folder / f"{model}_{task}_gpt_score.csv"
        if path.is_file():
            records.extend(load_official_csv(path, task))
    return records

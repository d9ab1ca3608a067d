"""Re-score released TIIF-Bench judge outputs (the official evaluation-results layout).

Layout: ``<dir>/<model>/<dimension>/<short|long>/<line_idx>.json``, each file holding ``gt_answers`` and
``model_pred`` (and the judge's raw ``model_output``). ``dir`` may also be a single model folder.
The summary follows the official scripts, including the 4-decimal Excel round trip of dimension scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalkit.benchmarks.tiif.aggregate import flat_table, summarize
from evalkit.benchmarks.tiif.data import DIMENSIONS, LENGTHS
from evalkit.benchmarks.tiif.parse import count_correct
from evalkit.errors import DataError


def _read_judgment(path: Path) -> tuple[int, int]:
    """(correct, total) of one released per-image judgment file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    gt, pred = data.get("gt_answers"), data.get("model_pred")
    if not isinstance(gt, list) or not isinstance(pred, list):
        raise DataError(f"{path}: 'gt_answers' and 'model_pred' must be lists")
    if len(gt) != len(pred):
        raise DataError(f"{path}: {len(gt)} ground-truth answers but {len(pred)} predictions")
    if not all(isinstance(x, str) for x in gt + pred):
        raise DataError(f"{path}: answers must be strings")
    return count_correct(gt, pred), len(gt)


def model_counts(model_dir: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Pooled (correct, total) per (dimension, length) of one model folder."""
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for dim_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if dim_dir.name not in DIMENSIONS:
            raise DataError(f"{dim_dir}: unknown TIIF-Bench dimension '{dim_dir.name}'")
        for len_dir in sorted(p for p in dim_dir.iterdir() if p.is_dir()):
            if len_dir.name not in LENGTHS:
                raise DataError(f"{len_dir}: expected a 'short' or 'long' folder")
            correct = total = 0
            for f in sorted(len_dir.glob("*.json")):
                c, t = _read_judgment(f)
                correct, total = correct + c, total + t
            if total:
                counts[(dim_dir.name, len_dir.name)] = (correct, total)
    return counts


def _is_model_dir(path: Path) -> bool:
    return any(p.is_dir() and p.name in DIMENSIONS for p in path.iterdir())


def import_judgments(path: Path | str, excel_rounding: bool = True) -> dict[str, dict[str, Any]]:
    """{model: official summary (+ flat 'table')} for every model under ``path``.

    ``excel_rounding=False`` computes groups from exact dimension accuracies instead of the official
    4-decimal values.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    model_dirs = [root] if _is_model_dir(root) else sorted(p for p in root.iterdir() if p.is_dir())
    if not model_dirs:
        raise DataError(f"{root}: no model folders in the TIIF-Bench evaluation-results layout")
    out: dict[str, dict[str, Any]] = {}
    for model_dir in model_dirs:
        counts = model_counts(model_dir)
        if not counts:
            raise DataError(f"{model_dir}: no judgment files (<dimension>/<short|long>/<i>.json)")
        summary = summarize(counts, excel_rounding=excel_rounding)
        out[model_dir.name] = {**summary, "table": flat_table(summary)}
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table (x100, 2 decimals) of the published columns, one row per model."""
    columns = list(next(iter(results.values()))["table"]) if results else []
    lines = ["model\t" + "\t".join(columns)]
    for model, summary in results.items():
        cells = ["-" if v is None else f"{v:.2f}" for v in summary["table"].values()]
        lines.append(model + "\t" + "\t".join(cells))
    return "\n".join(lines)

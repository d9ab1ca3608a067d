"""`evalkit score geneval --detections FILE`: GenEval's rules on recorded detections, no detector or CLIP."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evalkit.benchmarks.geneval.rules import TAGS, GenEvalOptions, score_detections
from evalkit.data import read_json_lines
from evalkit.errors import DataError


def _check_line(line: Any) -> str | None:
    if not isinstance(line, dict):
        return "not a JSON object"
    meta = line.get("metadata")
    if not isinstance(meta, dict) or meta.get("tag") not in TAGS or not isinstance(meta.get("include"), list):
        return "'metadata' must be an evaluation_metadata line (tag, include, prompt)"
    dets = line.get("detections", {})
    if not isinstance(dets, dict):
        return "'detections' must map class names to lists"
    for cls, items in dets.items():
        for d in items:
            if (
                not isinstance(d, dict)
                or len(d.get("box", [])) != 4
                or not isinstance(d.get("score"), int | float)
            ):
                return f"detection of '{cls}' needs 'box' [x1, y1, x2, y2] and a numeric 'score'"
    return None


def read_detection_lines(path: Path) -> list[dict[str, Any]]:
    """Validate every line before scoring any, so a bad line costs nothing."""
    lines = []
    for lineno, line in read_json_lines(path):
        problem = _check_line(line)
        if problem:
            raise DataError(f"{path}:{lineno}: {problem}")
        lines.append(line)
    return lines


def rescore_geneval_detections(path: Path, out: Path | None, options: dict[str, Any]) -> int:
    """One output line per input line, same order: {"correct": bool, "reason": str}."""
    if not Path(path).exists():
        raise DataError(f"no such file: {path}")
    opts = GenEvalOptions(**options)
    lines = read_detection_lines(path)
    results = []
    for i, line in enumerate(lines, start=1):
        try:
            r = score_detections(line, opts)
        except ValueError as e:
            raise DataError(f"{path}:{i}: {e}") from None
        results.append(json.dumps({"correct": r["correct"], "reason": r["reason"]}))
    text = "".join(r + "\n" for r in results)
    if out is None:
        sys.stdout.write(text)
    else:
        from evalkit.runs import atomic_write_bytes

        atomic_write_bytes(Path(out), text.encode())
    return len(results)

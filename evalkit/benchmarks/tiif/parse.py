"""TIIF-Bench judge replies: the official yes/no line parse and answer matching."""

from __future__ import annotations

import re
from collections.abc import Iterable

_YES_NO = re.compile(r"^(yes|no)\b", re.IGNORECASE)


class OutputFormatError(ValueError):
    """The judge reply does not hold one yes/no answer per question (the official retry condition)."""


def parse_yes_no(reply: str, n_questions: int) -> list[str]:
    """Official parse: every non-empty stripped line starting with a whole word yes/no counts, in order.

    Raises OutputFormatError when the count differs from the number of questions.
    """
    preds = []
    for line in reply.split("\n"):
        line = line.strip()
        if not line:
            continue
        m = _YES_NO.match(line)
        if m:
            preds.append(m.group(1).lower())
    if len(preds) != n_questions:
        raise OutputFormatError(f"Preds count {len(preds)} != questions count {n_questions}")
    return preds


def count_correct(gt_answers: Iterable[str], preds: Iterable[str]) -> int:
    """Matches compared case- and whitespace-insensitively (ground truth mixes 'Yes' and 'yes')."""
    return sum(g.strip().lower() == p.strip().lower() for g, p in zip(gt_answers, preds, strict=True))

"""DPG-Bench judge answers: every question of a cell answered 'yes' or 'no' from the judge's P(yes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PIL import Image

from evalkit.benchmarks.dpg.data import Proposition
from evalkit.judges.base import Judge

# answer_fn(cell_index, cell_image, propositions) -> one answer string per proposition
AnswerFn = Callable[[int, Image.Image, Sequence[Proposition]], Sequence[str]]


def judge_answer_fn(judge: Judge, threshold: float = 0.5) -> AnswerFn:
    """Answers from a Judge: 'yes' where P(yes) >= threshold, else 'no'."""

    def answer(cell_index: int, cell: Image.Image, props: Sequence[Proposition]) -> list[str]:
        probs = judge.yes_probability(cell, [p.question for p in props])
        return ["yes" if p >= threshold else "no" for p in probs]

    return answer

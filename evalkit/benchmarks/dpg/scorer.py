"""DPG-Bench per-sample scorer: every question on every cell, then dependency zeroing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Sample, SampleScorer
from evalkit.benchmarks.dpg.aggregate import combine_cells
from evalkit.benchmarks.dpg.data import COMPAT_MODES, DPGImageError, DPGItem, Proposition, split_grid
from evalkit.benchmarks.dpg.parse import AnswerFn, judge_answer_fn
from evalkit.errors import EvalkitError
from evalkit.judges.base import Judge, JudgeFailure, judge_map


def zero_dependents(props: Sequence[Proposition], raw: Sequence[float]) -> list[float]:
    """Row-order dependency zeroing on a copy, using already-updated scores (as the official loop).

    Raises DPGImageError (the official KeyError) when a parent id has no question.
    """
    scores = {p.pid: r for p, r in zip(props, raw, strict=True)}
    for p in props:
        for parent in p.parents:
            if parent == 0:
                continue
            if parent not in scores:
                raise DPGImageError(f"KeyError: parent proposition {parent} of {p.pid} has no question")
            if scores[parent] == 0:
                scores[p.pid] = 0.0
                break
    return [scores[p.pid] for p in props]


def score_cell(item: DPGItem, cell: Image.Image, answer_fn: AnswerFn, k: int) -> dict[str, Any]:
    """One grid cell: every question answered, then zeroed. Raises DPGImageError, JudgeFailure."""
    props = item.propositions
    if not props:
        raise DPGImageError(f"item {item.item_id} has no questions")
    answers = [str(a) for a in answer_fn(k, cell, props)]
    if len(answers) != len(props):
        raise JudgeFailure(f"{len(answers)} answers for {len(props)} questions")
    raw = [float(a == "yes") for a in answers]
    zeroed = zero_dependents(props, raw)
    return {
        "k": k,
        "pids": [p.pid for p in props],
        "l2": [p.l2 for p in props],
        "answers": answers,
        "raw": raw,
        "zeroed": zeroed,
        "cell_score": sum(zeroed) / len(zeroed),
    }


def score_item(
    item: DPGItem, cells: Sequence[Image.Image], answer_fn: AnswerFn, compat: str = "default"
) -> dict[str, Any]:
    """Score one grid's cells in order (a failing cell stops the image, as in the official loop)."""
    scored = [score_cell(item, cell, answer_fn, k) for k, cell in enumerate(cells)]
    return {**combine_cells(scored, compat), "cells": scored}


class DPGScorer(SampleScorer):
    """Asks every question on every cell.

    ``input="cell"`` (the pipeline: images_per_sample = 4, one record per generated image, combined per
    sample in ``aggregate``) or ``input="grid"`` (one 2x2 grid per sample, split here).
    """

    def __init__(
        self,
        judge: Judge,
        items: Mapping[Any, DPGItem],
        compat: str = "default",
        pic_num: int = 4,
        resolution: int | None = None,
        threshold: float = 0.5,
        input: str = "cell",
    ):
        if compat not in COMPAT_MODES:
            raise EvalkitError(f"unknown compat mode '{compat}' (known: {', '.join(COMPAT_MODES)})")
        if input not in ("cell", "grid"):
            raise EvalkitError(f"DPG scorer input must be 'cell' or 'grid', got '{input}'")
        self.judge, self.items, self.compat, self.input = judge, items, compat, input
        self.pic_num, self.resolution, self.threshold = pic_num, resolution, threshold

    def config(self) -> dict[str, Any]:
        return {
            "judge": self.judge.config(),
            "compat": self.compat,
            "pic_num": self.pic_num,
            "input": self.input,
            "resolution": self.resolution,
            "threshold": self.threshold,
            "vqa": "judge yes_probability",
        }

    def score_one(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        item_id = sample.metadata.get("item_id", sample.id)
        base = {"item_id": item_id, "compat": self.compat}
        item = self.items.get(item_id)
        if item is None:
            return {**base, "failed": True, "reason": f"no questions for item {item_id} in the DPG-Bench CSV"}
        answer_fn = judge_answer_fn(self.judge, self.threshold)
        try:
            if self.input == "grid":
                cells = split_grid(image, self.pic_num, self.resolution)
                return {**base, "failed": False, **score_item(item, cells, answer_fn, self.compat)}
            cell = score_cell(item, image, answer_fn, k=0)
            del cell["k"]  # the cell's index is the pipeline's k (the record's), not known here
            return {**base, "failed": False, **cell}
        except JudgeFailure as e:
            return {**base, "failed": True, "reason": e.reason}
        except DPGImageError as e:
            return {**base, "failed": True, "reason": f"official scorer skips this image: {e}"}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        # samples are independent: an HTTP judge gets several in flight, records as from the plain loop
        pairs = list(zip(samples, images, strict=True))
        return judge_map(self.judge, lambda pair: self.score_one(*pair), pairs)

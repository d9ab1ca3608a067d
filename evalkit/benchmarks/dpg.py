"""DPG-Bench: dense prompts, 4 images per prompt as a 2x2 grid, each cell asked every question.

Per cell every question is answered (score 1 only for the exact answer "yes"); then, in CSV row order,
a question with a parent (dependency != 0) currently scored 0 is set to 0; cell score = mean, image score
= mean over cells, DPG score = 100 x mean over images.

``compat="default"`` is the intended behaviour: every CSV row is used, and the L1/L2 category columns are
pooled from the same dependency-zeroed scores over all cells. ``compat="official"`` reproduces
``compute_dpg_bench.py`` (ELLA): the first CSV data row is dropped (an image whose questions depend on it
fails with KeyError and is left out), non-contiguous rows of an item keep only the last block, and the
category scores come from the LAST cell's answers before dependency zeroing.

Answers come from any Judge (yes-probability thresholded, default backend) or from any function that
returns answer strings (e.g. the official mPLUG VQA where installed).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.data import read_json_lines
from evalkit.errors import DataError, EvalkitError
from evalkit.judges.base import Judge, JudgeFailure

PROTOCOLS = ("dpg", "dpg@official")
COMPAT_MODES = ("default", "official")
CSV_COLUMNS = (
    "item_id",
    "text",
    "keywords",
    "proposition_id",
    "dependency",
    "category_broad",
    "category_detailed",
    "tuple",
    "question_natural_language",
)
L1_COLUMNS = {
    "global": "Global",
    "entity": "Entity",
    "attribute": "Attribute",
    "relation": "Relation",
    "other": "Other",
}
COLUMNS = ["Global", "Entity", "Attribute", "Relation", "Other", "Overall"]

# answer_fn(cell_index, cell_image, propositions) -> one answer string per proposition
AnswerFn = Callable[[int, Image.Image, Sequence["Proposition"]], Sequence[str]]


class DPGImageError(Exception):
    """An image the official scorer cannot score (it would skip it silently)."""


@dataclass(frozen=True)
class Proposition:
    """One question row of dpg_bench.csv."""

    pid: int
    parents: tuple[int, ...]
    tuple_text: str
    question: str

    @property
    def l2(self) -> str:
        """L2 category: the tuple text before '(' (e.g. 'entity - whole', 'global -')."""
        return self.tuple_text.split("(")[0].strip()

    @property
    def l1(self) -> str:
        """L1 category: the L2 text before the first '-'."""
        return self.l2.split("-")[0].strip()


@dataclass
class DPGItem:
    """All questions of one prompt, in CSV row order."""

    item_id: str
    text: str
    propositions: list[Proposition] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- data


def load_prompts(root: Path) -> list[tuple[str, str]]:
    """(item_id, prompt) pairs from prompts.jsonl, else from prompts/<item_id>.txt, in file order."""
    jsonl = root / "prompts.jsonl"
    if jsonl.is_file():
        out = []
        for n, row in read_json_lines(jsonl):
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("item_id"), str)
                or not isinstance(row.get("text"), str)
            ):
                raise DataError(f"{jsonl}:{n}: expected {{'item_id': str, 'text': str}}")
            out.append((row["item_id"], row["text"]))
        return out
    folder = root / "prompts"
    if not folder.is_dir():
        raise DataError(f"DPG-Bench prompts missing under {root} (run `evalkit data fetch dpg`)")
    return [(p.stem, p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.txt"))]


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DataError(f"{where}: {what} '{text}' is not an integer") from None


def read_csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of dpg_bench.csv, all values as text; schema errors name file:line."""
    if not path.is_file():
        raise DataError(f"DPG-Bench question file missing: {path} (run `evalkit data fetch dpg`)")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
            raise DataError(f"{path}:1: expected columns {', '.join(CSV_COLUMNS)}, got {header}")
        rows = []
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(CSV_COLUMNS):
                raise DataError(f"{path}:{line}: {len(values)} fields, expected {len(CSV_COLUMNS)}")
            rows.append((line, dict(zip(CSV_COLUMNS, values, strict=True))))
    return rows


def _proposition(row: Mapping[str, str], where: str) -> Proposition:
    pid = _parse_int(row["proposition_id"], "proposition_id", where)
    parents = tuple(_parse_int(d, "dependency", where) for d in row["dependency"].split(","))
    if not row["question_natural_language"].strip():
        raise DataError(f"{where}: empty question")
    return Proposition(pid, parents, row["tuple"], row["question_natural_language"])


def _looks_numeric(values: Sequence[str]) -> bool:
    """Whether pandas would read this column as numbers (ints or floats)."""

    def numeric(v: str) -> bool:
        try:
            float(v)
        except ValueError:
            return False
        return True

    return bool(values) and all(numeric(v) for v in values)


def load_questions(path: Path, compat: str = "default") -> dict[Any, DPGItem]:
    """Items of dpg_bench.csv keyed by item_id.

    default: every row; rows of one item are merged in row order; a duplicate proposition id or a parent
    id that the item does not have is a DataError.
    official: the first data row is dropped, a non-contiguous item keeps only its last block, and the
    pandas type inference is honoured (an all-numeric item_id column makes every key a number, so no
    image file name matches; an all-integer dependency column crashes the official script).
    """
    if compat not in COMPAT_MODES:
        raise EvalkitError(f"unknown compat mode '{compat}' (known: {', '.join(COMPAT_MODES)})")
    rows = read_csv_rows(path)
    if compat == "official":
        return _load_official(path, rows)
    items: dict[Any, DPGItem] = {}
    for line, row in rows:
        where = f"{path}:{line}"
        item = items.setdefault(row["item_id"], DPGItem(row["item_id"], row["text"]))
        prop = _proposition(row, where)
        if any(p.pid == prop.pid for p in item.propositions):
            raise DataError(f"{where}: duplicate proposition_id {prop.pid} for item {item.item_id}")
        item.propositions.append(prop)
    for item in items.values():
        pids = {p.pid for p in item.propositions}
        for p in item.propositions:
            missing = [q for q in p.parents if q != 0 and q not in pids]
            if missing:
                raise DataError(
                    f"{path}: item {item.item_id} proposition {p.pid} depends on missing {missing}"
                )
    return items


def _load_official(path: Path, rows: list[tuple[int, dict[str, str]]]) -> dict[Any, DPGItem]:
    """prepare_dpg_data as released (see load_questions)."""
    if _looks_numeric([r["dependency"] for _, r in rows]):
        raise DataError(f"{path}: the official scorer crashes on an all-integer dependency column")
    numeric_ids = _looks_numeric([r["item_id"] for _, r in rows])
    items: dict[Any, DPGItem] = {}
    previous: Any = None
    for i, (line, row) in enumerate(rows):
        if i == 0:
            continue
        key: Any = float(row["item_id"]) if numeric_ids else row["item_id"]
        prop = _proposition(row, f"{path}:{line}")
        if key != previous:
            items[key] = DPGItem(row["item_id"], row["text"])
        props = items[key].propositions
        same = [k for k, p in enumerate(props) if p.pid == prop.pid]
        if same:
            props[same[0]] = prop  # a dict update keeps the first position
        else:
            props.append(prop)
        previous = key
    return items


# ------------------------------------------------------------------------------------------ scoring


def split_grid(image: Image.Image, pic_num: int = 4, resolution: int | None = None) -> list[Image.Image]:
    """The first pic_num cells of a 2x2 grid, row-major; cell side = resolution or half the width."""
    if pic_num not in (1, 2, 3, 4):
        raise EvalkitError(f"pic_num must be 1-4, got {pic_num}")
    r = resolution or image.width // 2
    boxes = [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)]
    return [image.crop(b) for b in boxes[:pic_num]]


def merge_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Four equally sized images as one 2x2 grid (the protocol's saved form)."""
    if len(images) != 4:
        raise EvalkitError(f"a DPG-Bench grid needs 4 images, got {len(images)}")
    w, h = images[0].size
    if any(im.size != (w, h) for im in images):
        raise EvalkitError("grid images must all have the same size")
    grid = Image.new("RGB", (2 * w, 2 * h))
    for k, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((k % 2) * w, (k // 2) * h))
    return grid


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


def score_item(
    item: DPGItem, cells: Sequence[Image.Image], answer_fn: AnswerFn, compat: str = "default"
) -> dict[str, Any]:
    """Score one grid's cells in order (a failing cell stops the image, as in the official loop)."""
    scored = [score_cell(item, cell, answer_fn, k) for k, cell in enumerate(cells)]
    return {**combine_cells(scored, compat), "cells": scored}


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


def score_folder(
    image_dir: Path,
    items: Mapping[Any, DPGItem],
    answer_fn: Callable[[str], AnswerFn],
    pic_num: int = 4,
    resolution: int | None = None,
    compat: str = "default",
) -> dict[str, Any]:
    """Score every grid image of a folder like the official script (key = file name up to the first '.').

    ``answer_fn(file_name)`` gives the answer function for that image. Unscorable images are listed in
    ``failed_images`` with their reasons.
    """
    per_image: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for path in sorted(image_dir.iterdir()):
        if not path.is_file():
            continue
        item = items.get(path.name.split(".")[0])
        if item is None:
            failures[path.name] = "no questions for this image (file name is not an item_id)"
            continue
        try:
            with Image.open(path) as im:
                cells = split_grid(im.convert("RGB"), pic_num, resolution)
        except OSError as e:
            failures[path.name] = f"unreadable image: {e}"
            continue
        try:
            per_image[path.name] = score_item(item, cells, answer_fn(path.name), compat)
        except (DPGImageError, JudgeFailure) as e:
            failures[path.name] = str(e)
    summary = summarize(list(per_image.values()), n_failed=len(failures))
    return {
        **summary,
        "per_image": per_image,
        "failed_images": sorted(failures),
        "failure_messages": failures,
        "dpg_score": summary["Overall"],
    }


def judge_answer_fn(judge: Judge, threshold: float = 0.5) -> AnswerFn:
    """Answers from a Judge: 'yes' where P(yes) >= threshold, else 'no'."""

    def answer(cell_index: int, cell: Image.Image, props: Sequence[Proposition]) -> list[str]:
        probs = judge.yes_probability(cell, [p.question for p in props])
        return ["yes" if p >= threshold else "no" for p in probs]

    return answer


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
        return [self.score_one(s, im) for s, im in zip(samples, images, strict=True)]


GRID_FILE = "grid.png"


class DPG(Benchmark):
    """DPG-Bench: pic_num images per prompt (4 = the protocol's 2x2 grid, see merge_grid).

    A run keeps the protocol's saved form: ``samples/<id>/grid.png`` (cells 0-3 row-major, pixel-identical
    to ``samples/<id>/<k>.png``) is written next to the four generated images. Scoring asks every question
    on each generated image (``input="cell"``, one record per cell) and ``aggregate`` combines a sample's
    cells exactly as a split grid is combined, so the numbers equal those of scoring the saved grid.
    """

    name = "dpg"
    needs_judge = True  # `evalkit run` refuses to start without --judge

    def __init__(
        self,
        data_dir: Path | str,
        protocol: str = "dpg",
        compat: str | None = None,
        csv_path: Path | str | None = None,
        pic_num: int = 4,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown DPG protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        compat = compat or ("official" if protocol == "dpg@official" else "default")
        if compat not in COMPAT_MODES:
            raise EvalkitError(f"unknown compat mode '{compat}' (known: {', '.join(COMPAT_MODES)})")
        if pic_num not in (1, 2, 3, 4):
            raise EvalkitError(f"pic_num must be 1-4, got {pic_num}")
        self.root = Path(data_dir) / "dpg_bench"
        self.compat, self.pic_num, self.images_per_sample = compat, pic_num, pic_num
        self.protocol = "dpg@official" if compat == "official" else "dpg"
        self.csv_path = Path(csv_path) if csv_path else self.root / "dpg_bench.csv"
        self.columns = list(COLUMNS)

    def samples(self) -> list[Sample]:
        return [
            Sample(id=item_id, prompt=text, metadata={"item_id": item_id})
            for item_id, text in load_prompts(self.root)
        ]

    def derived_names(self, sample: Sample) -> list[str]:
        """The grid file the protocol saves per prompt (only for the full 2x2 layout, pic_num = 4)."""
        return [GRID_FILE] if self.pic_num == 4 else []

    def derived_images(self, images: Sequence[Image.Image]) -> dict[str, Image.Image]:
        """The 2x2 grid of a sample's generated images (k = 0..3, row-major)."""
        return {GRID_FILE: merge_grid(images)} if self.pic_num == 4 else {}

    def scorer_config(self, **options: Any) -> dict[str, Any]:
        """A run scores its generated images one cell per record; ``input="grid"`` is for scoring saved
        grid images outside a run (DPGScorer, score_folder)."""
        if options.get("input", "cell") != "cell":
            raise EvalkitError(
                "a DPG-Bench run scores each generated image (input=cell); its samples/<id>/grid.png "
                "holds the same cells, so the numbers are those of the grid"
            )
        return dict(options)

    def make_scorer(self, **options: Any) -> DPGScorer:
        """options: judge (required), input ('cell' | 'grid'), resolution (grid cell side; default half the
        grid width), threshold (P(yes) counted as 'yes', 0.5)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("DPG-Bench needs a yes/no judge (--judge hf:<id> or --judge openai:<model>)")
        items = load_questions(self.csv_path, self.compat)
        return DPGScorer(judge, items, compat=self.compat, pic_num=self.pic_num, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        results, failed = group_records(records, self.compat)
        n_failed_records = sum(1 for r in records if r.get("failed"))
        return {
            **summarize(results, n_failed=len(failed)),
            "n_failed": n_failed_records,
            "failed_samples": failed,
            "protocol": self.protocol,
            "compat": self.compat,
        }

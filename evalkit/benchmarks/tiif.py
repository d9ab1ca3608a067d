"""TIIF-Bench: yes/no questions per prompt, answered by an MLLM judge, grouped into 9 groups.

Protocols:
* ``tiif`` (default): temperature 0, the first official template, a fixed seed; dimension accuracies are
  used at full precision.
* ``tiif@official``: as released - temperature 1.0 and one of the three templates picked at random per
  request (seeded here, so a run can be repeated), dimension accuracies rounded to 4 decimals as the
  official Excel round trip does.

Released judge outputs are re-scored by :func:`evalkit.benchmarks.tiif_import.import_judgments`.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.data import read_json_lines
from evalkit.errors import DataError, EvalkitError
from evalkit.judges.base import Judge, JudgeFailure

PROTOCOLS = ("tiif", "tiif@official")
SPLITS = ("testmini", "test")
LENGTHS = ("short", "long")
PLACEHOLDER = "##YNQuestions##"
TEMPLATE_FILES = ("raw_prompt.txt", "raw_prompt_1.txt", "raw_prompt_2.txt")

# The 9 groups of summary_dimension_results.py, in the order of the official output.
GROUPS: dict[str, tuple[str, ...]] = {
    "Basic_Attribute": ("shape+color", "color+texture", "texture+color", "shape+texture"),
    "Basic_Relation": ("2d_spatial_relation", "3d_spatial_relation", "action+2d", "action+3d"),
    "Basic_Reasoning": ("numeracy", "negation", "differentiation", "comparison"),
    "Advanced_Attribute+Relation": (
        "action+color",
        "action+texture",
        "color+2d",
        "color+3d",
        "shape+2d",
        "shape+3d",
        "texture+2d",
        "texture+3d",
    ),
    "Advanced_Attribute+Reasoning": (
        "numeracy+color",
        "numeracy+texture",
        "comparison+color",
        "comparison+texture",
        "differentiation+color",
        "differentiation+texture",
        "negation+color",
        "negation+texture",
    ),
    "Advanced_Relation+Reasoning": (
        "numeracy+2d",
        "numeracy+3d",
        "comparison+2d",
        "comparison+3d",
        "differentiation+2d",
        "differentiation+3d",
        "negation+2d",
        "negation+3d",
    ),
    "Advanced_Text Generation": ("text",),
    "Advanced_Style Control": ("style",),
    "Real_Complex": ("real_world",),
}
DIMENSIONS: tuple[str, ...] = tuple(sorted(d for dims in GROUPS.values() for d in dims))

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

_YES_NO = re.compile(r"^(yes|no)\b", re.IGNORECASE)


class OutputFormatError(ValueError):
    """The judge reply does not hold one yes/no answer per question (the official retry condition)."""


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TIIFPrompt:
    """One prompt line of a dimension file joined with its question line."""

    dimension: str
    line_idx: int
    short: str
    long: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON lines of one file; a malformed line is a DataError naming file:line."""
    rows: list[dict[str, Any]] = []
    for n, row in read_json_lines(path):
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _field(row: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """A required field of the expected type, else a DataError that says which."""
    value = row.get(key)
    if not isinstance(value, kind):
        raise DataError(f"{where}: field '{key}' missing or not {kind.__name__}")
    return value


def load_dimension(root: Path, split: str, dimension: str) -> list[TIIFPrompt]:
    """Prompts of one dimension; line i of the prompt file pairs with line i of the eval file."""
    prompt_path = root / f"{split}_prompts" / f"{dimension}_prompts.jsonl"
    eval_path = root / f"{split}_eval_prompts" / f"{dimension}_eval_prompts.jsonl"
    for p in (prompt_path, eval_path):
        if not p.is_file():
            raise DataError(f"TIIF-Bench file missing: {p} (run `evalkit data fetch tiif`)")
    prompts, evals = _read_jsonl(prompt_path), _read_jsonl(eval_path)
    if len(prompts) != len(evals):
        raise DataError(f"{eval_path}: {len(evals)} lines but {prompt_path.name} has {len(prompts)}")
    out = []
    for i, (p, e) in enumerate(zip(prompts, evals, strict=True)):
        where_p, where_e = f"{prompt_path}:{i + 1}", f"{eval_path}:{i + 1}"
        questions = _field(e, "yn_question_list", list, where_e)
        answers = _field(e, "yn_answer_list", list, where_e)
        if len(questions) != len(answers):
            raise DataError(f"{where_e}: {len(questions)} questions but {len(answers)} answers")
        out.append(
            TIIFPrompt(
                dimension=dimension,
                line_idx=i,
                short=_field(p, "short_description", str, where_p),
                long=_field(p, "long_description", str, where_p),
                questions=tuple(str(q) for q in questions),
                answers=tuple(str(a) for a in answers),
            )
        )
    return out


def load_prompts(root: Path, split: str = "testmini") -> list[TIIFPrompt]:
    """All prompts of a split, dimensions in sorted order, lines in file order."""
    if split not in SPLITS:
        raise EvalkitError(f"unknown TIIF-Bench split '{split}' (known: {', '.join(SPLITS)})")
    return [p for dim in DIMENSIONS for p in load_dimension(root, split, dim)]


def official_indices(root: Path, prompts: list[TIIFPrompt]) -> dict[tuple[str, int], int]:
    """(dimension, testmini line) -> test line: the released testmini results name images by the
    line index of the prompt in the full test file. Empty when the test files are absent."""
    out: dict[tuple[str, int], int] = {}
    for dim in sorted({p.dimension for p in prompts}):
        if not (root / "test_prompts" / f"{dim}_prompts.jsonl").is_file():
            return {}
        index = {(t.short, t.long): t.line_idx for t in load_dimension(root, "test", dim)}
        for p in prompts:
            if p.dimension == dim and (p.short, p.long) in index:
                out[(dim, p.line_idx)] = index[(p.short, p.long)]
    return out


def load_templates(root: Path) -> tuple[str, str]:
    """(system prompt, the three user templates) from judge_prompts/, verbatim."""
    folder = root / "judge_prompts"
    try:
        system = (folder / "system_prompt.txt").read_text(encoding="utf-8")
        templates = tuple((folder / name).read_text(encoding="utf-8") for name in TEMPLATE_FILES)
    except FileNotFoundError as e:
        raise DataError(f"TIIF-Bench judge prompt missing: {e.filename}") from None
    for name, text in zip(TEMPLATE_FILES, templates, strict=True):
        if PLACEHOLDER not in text:
            raise DataError(f"{folder / name}: no {PLACEHOLDER} placeholder")
    return system, templates  # type: ignore[return-value]


def sample_id(dimension: str, length: str, line_idx: int) -> str:
    """Stable sample id; also a valid folder name."""
    return f"{dimension}__{length}__{line_idx:04d}"


# -------------------------------------------------------------------------------------- judge replies


def build_user_text(template: str, questions: Iterable[str]) -> str:
    """The official substitution: questions joined by newlines."""
    return template.replace(PLACEHOLDER, "\n".join(questions))


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


# ---------------------------------------------------------------------------------------- aggregation


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


# -------------------------------------------------------------------------------------------- scoring


def _stable_int(*parts: object) -> int:
    """A process-independent integer seed from its parts (Python's hash() is salted per process)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


class TIIFScorer(SampleScorer):
    """Asks the judge all questions of a sample in one chat request and parses the yes/no lines."""

    def __init__(
        self,
        judge: Judge,
        system: str,
        templates: tuple[str, ...],
        protocol: str = "tiif",
        seed: int = 0,
        max_attempts: int = 3,
        max_tokens: int = 1024,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown TIIF protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if max_attempts < 1:
            raise EvalkitError("max_attempts must be >= 1")
        self.judge, self.system, self.templates = judge, system, templates
        self.protocol, self.seed = protocol, seed
        self.max_attempts, self.max_tokens = max_attempts, max_tokens

    @property
    def official(self) -> bool:
        return self.protocol == "tiif@official"

    def config(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "judge": self.judge.config(),
            "seed": self.seed,
            "temperature": self.decoding(0)["temperature"],
            "max_attempts": self.max_attempts,
            "max_tokens": self.max_tokens,
            "templates": "random of 3" if self.official else TEMPLATE_FILES[0],
        }

    def decoding(self, attempt: int) -> dict[str, Any]:
        """Official: temperature 1.0; default: greedy with a fixed seed."""
        if self.official:
            return {"temperature": 1.0, "max_tokens": self.max_tokens, "seed": self.seed + attempt}
        return {"temperature": 0.0, "max_tokens": self.max_tokens, "seed": self.seed}

    def template_index(self, sample: Sample, attempt: int) -> int:
        """Default: template 0. Official: a random template per request, seeded by sample and attempt."""
        if not self.official:
            return 0
        return random.Random(_stable_int(self.seed, sample.id, attempt)).randrange(len(self.templates))

    def messages(self, image: Image.Image, questions: list[str], template_index: int) -> list[dict[str, Any]]:
        text = build_user_text(self.templates[template_index], questions)
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "image": image}]},
        ]

    def score_one(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        meta = sample.metadata
        questions, gt = list(meta["questions"]), list(meta["answers"])
        base = {
            "dimension": meta["dimension"],
            "length": meta["length"],
            "line_idx": meta["line_idx"],
            "questions": questions,
            "gt_answers": gt,
        }
        errors: list[str] = []
        for attempt in range(self.max_attempts):
            t = self.template_index(sample, attempt)
            try:
                reply = self.judge.chat(self.messages(image, questions, t), **self.decoding(attempt))
            except JudgeFailure as e:
                return {**base, "failed": True, "reason": e.reason, "attempts": attempt + 1}
            try:
                preds = parse_yes_no(reply, len(questions))
            except OutputFormatError as e:
                errors.append(f"OutputFormatError: {e}")
                continue
            correct = count_correct(gt, preds)
            return {
                **base,
                "failed": False,
                "preds": preds,
                "correct": correct,
                "total": len(questions),
                "template": TEMPLATE_FILES[t],
                "attempts": attempt + 1,
                "reply": reply,
            }
        reason = f"unparseable after {self.max_attempts} attempts: {errors[-1]}"
        return {**base, "failed": True, "reason": reason, "attempts": self.max_attempts}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        return [self.score_one(s, im) for s, im in zip(samples, images, strict=True)]


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


class TIIF(Benchmark):
    """TIIF-Bench under one protocol: one image per (prompt, short|long description)."""

    name = "tiif"
    needs_judge = True  # `evalkit run` refuses to start without --judge
    images_per_sample = 1

    def __init__(
        self,
        data_dir: Path | str,
        protocol: str = "tiif",
        split: str = "testmini",
        lengths: tuple[str, ...] = LENGTHS,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown TIIF protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if split not in SPLITS:
            raise EvalkitError(f"unknown TIIF-Bench split '{split}' (known: {', '.join(SPLITS)})")
        bad = [ln for ln in lengths if ln not in LENGTHS]
        if bad:
            raise EvalkitError(f"unknown description length(s) {bad} (known: {', '.join(LENGTHS)})")
        self.root = Path(data_dir) / "tiif_bench"
        self.protocol, self.split, self.lengths = protocol, split, tuple(lengths)
        self.columns = table_columns()

    def samples(self) -> list[Sample]:
        """One sample per (prompt, length); metadata official_idx = image index in the official layout."""
        prompts = load_prompts(self.root, self.split)
        if self.split == "test":
            official = {(p.dimension, p.line_idx): p.line_idx for p in prompts}
        else:
            official = official_indices(self.root, prompts)
        out = []
        for p in prompts:
            for length in self.lengths:
                prompt = p.short if length == "short" else p.long
                meta = {
                    "dimension": p.dimension,
                    "length": length,
                    "line_idx": p.line_idx,
                    "official_idx": official.get((p.dimension, p.line_idx)),
                    "split": self.split,
                    "questions": list(p.questions),
                    "answers": list(p.answers),
                }
                out.append(
                    Sample(id=sample_id(p.dimension, length, p.line_idx), prompt=prompt, metadata=meta)
                )
        return out

    def make_scorer(self, **options: Any) -> TIIFScorer:
        """options: judge (required), seed, max_attempts, max_tokens."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("TIIF-Bench needs a judge (--judge hf:<id> or --judge openai:<model>)")
        system, templates = load_templates(self.root)
        return TIIFScorer(judge, system, templates, protocol=self.protocol, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        counts, n_scored, n_failed = pooled_counts(records)
        summary = summarize(counts, excel_rounding=self.protocol == "tiif@official")
        table = flat_table(summary)
        return {
            **table,
            "table": table,
            "n_records": len(records),
            "n_scored": n_scored,
            "n_failed": n_failed,
            "protocol": self.protocol,
            "summary": summary,
        }

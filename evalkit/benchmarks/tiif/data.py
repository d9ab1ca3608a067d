"""TIIF-Bench data and protocols: the dimension files, their question lists and the judge templates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.data import read_json_lines
from evalkit.errors import DataError, EvalkitError

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

"""GEdit-Bench data and protocol: the local copy (data.jsonl + images), the Hub export, the VIEScore prompts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evalkit.data import read_json_lines
from evalkit.errors import DataError

PROTOCOLS = ("gedit",)


TASK_TYPES = (
    "background_change",
    "color_alter",
    "material_alter",
    "motion_change",
    "ps_human",
    "style_change",
    "subject-add",
    "subject-remove",
    "subject-replace",
    "text_change",
    "tone_transfer",
)


LANGUAGES = ("en", "cn")


SUBSETS = ("fullset", "intersection")


DATA_FILE = "data.jsonl"


DATA_FIELDS = ("task_type", "key", "instruction", "instruction_language", "Intersection_exist", "input_image")


def load_prompts(root: Path) -> tuple[str, str]:
    """(SC template with <instruction>, PQ prompt) assembled as VIEScore(task='tie') does."""
    folder = root / "judge_prompts"
    names = (
        "context_no_delimit.txt",
        "prompts_0shot_two_image_edit_rule.txt",
        "prompts_0shot_tie_rule_SC.txt",
        "prompts_0shot_rule_PQ.txt",
    )
    try:
        context, two_image, tie_sc, rule_pq = ((folder / n).read_text(encoding="utf-8") for n in names)
    except FileNotFoundError as e:
        raise DataError(f"GEdit-Bench judge prompt missing: {e.filename}") from None
    if "<instruction>" not in tie_sc:
        raise DataError(f"{folder / names[2]}: no <instruction> placeholder")
    return "\n".join([context, two_image, tie_sc]), "\n".join([context, rule_pq])


def load_rows(root: Path) -> list[dict[str, Any]]:
    """Rows of the local copy (``data.jsonl`` + images); a malformed line names file:line."""
    path = root / DATA_FILE
    if not path.is_file():
        raise DataError(f"GEdit-Bench data missing: {path} (run `evalkit data fetch gedit`)")
    rows = []
    for n, row in read_json_lines(path):
        missing = [k for k in DATA_FIELDS if k not in row] if isinstance(row, dict) else list(DATA_FIELDS)
        if missing:
            raise DataError(f"{path}:{n}: missing field(s) {missing}")
        if row["task_type"] not in TASK_TYPES:
            raise DataError(f"{path}:{n}: unknown task_type '{row['task_type']}'")
        if row["instruction_language"] not in LANGUAGES:
            raise DataError(f"{path}:{n}: unknown instruction_language '{row['instruction_language']}'")
        rows.append(row)
    return rows


def export_rows(rows: Iterable[Mapping[str, Any]], dest: Path) -> int:
    """Write Hub rows (``input_image`` as PIL) as the local copy: data.jsonl + images/<key>.png."""
    (dest / "images").mkdir(parents=True, exist_ok=True)
    n = 0
    with (dest / DATA_FILE).open("w", encoding="utf-8") as f:
        for row in rows:
            rel = f"images/{row['key']}.png"
            image = row["input_image"]
            if not (dest / rel).exists():
                image.save(dest / rel)
            record = {k: row[k] for k in DATA_FIELDS if k != "input_image"}
            record["Intersection_exist"] = bool(record["Intersection_exist"])
            f.write(json.dumps({**record, "input_image": rel}, ensure_ascii=False) + "\n")
            n += 1
    return n

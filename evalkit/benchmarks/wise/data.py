"""WISE data and protocols: prompt files, id ranges per category, judge prompts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.data import read_text_file
from evalkit.errors import DataError, EvalkitError

PROTOCOLS = ("wise@legacy", "wise@verified")


DEFAULT_PROTOCOL = "wise@legacy"  # the protocol of the paper, BAGEL and AlphaGRPO tables


CATEGORIES = ("CULTURE", "TIME", "SPACE", "BIOLOGY", "PHYSICS", "CHEMISTRY")


COLUMN_NAMES = {
    "CULTURE": "Cultural",
    "TIME": "Time",
    "SPACE": "Space",
    "BIOLOGY": "Biology",
    "PHYSICS": "Physics",
    "CHEMISTRY": "Chemistry",
}


BAGEL_UNWEIGHTED_KEY = "Overall (unweighted mean of 6 categories, as in BAGEL's tables)"


@dataclass(frozen=True)
class Variant:
    """What differs between the legacy and the verified protocol."""

    folder: str
    files: tuple[str, ...]
    ranges: dict[str, tuple[int, int]]
    weights: dict[str, float]
    system_file: str
    user_file: str
    max_tokens: int


VARIANTS: dict[str, Variant] = {
    "wise@legacy": Variant(
        folder="legacy",
        files=("cultural_common_sense", "spatio-temporal_reasoning", "natural_science"),
        ranges={
            "CULTURE": (1, 400),
            "TIME": (401, 567),
            "SPACE": (568, 700),
            "BIOLOGY": (701, 800),
            "PHYSICS": (801, 900),
            "CHEMISTRY": (901, 1000),
        },
        weights={
            "CULTURE": 0.4,
            "TIME": 0.167,
            "SPACE": 0.133,
            "BIOLOGY": 0.1,
            "PHYSICS": 0.1,
            "CHEMISTRY": 0.1,
        },
        system_file="legacy_gpt4o_system.txt",
        user_file="legacy_gpt4o_user_template.txt",
        max_tokens=2000,
    ),
    "wise@verified": Variant(
        folder="verified",
        files=(
            "cultural_common_sense_verified",
            "spatio-temporal_reasoning_verified",
            "natural_science_verified",
        ),
        ranges={
            "CULTURE": (1, 400),
            "TIME": (401, 520),
            "SPACE": (521, 640),
            "BIOLOGY": (641, 760),
            "PHYSICS": (761, 880),
            "CHEMISTRY": (881, 1000),
        },
        weights={
            "CULTURE": 0.4,
            "TIME": 0.12,
            "SPACE": 0.12,
            "BIOLOGY": 0.12,
            "PHYSICS": 0.12,
            "CHEMISTRY": 0.12,
        },
        system_file="verified_qwen35_system.txt",
        user_file="verified_qwen35_user_template.txt",
        max_tokens=500,
    ),
}


# --category of the official scripts: which ids a single file must cover.
CATEGORY_ARG_CATEGORIES = {
    "culture": ("CULTURE",),
    "space-time": ("TIME", "SPACE"),
    "science": ("BIOLOGY", "PHYSICS", "CHEMISTRY"),
    "all": CATEGORIES,
}


_SEPARATORS = re.compile(r"[ \t\r\n,]*")


def category_of(prompt_id: int, ranges: Mapping[str, tuple[int, int]]) -> str | None:
    """The category whose id range holds prompt_id, or None."""
    for cat, (lo, hi) in ranges.items():
        if lo <= prompt_id <= hi:
            return cat
    return None


def _array_entries(text: str, path: Path) -> list[tuple[int, Any]]:
    """(line where it starts, value) for every element of a top-level JSON array."""
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise DataError(f"{path}:1: expected a JSON array of prompts")
    entries, pos = [], pos + 1
    while True:
        pos = _SEPARATORS.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith("]", pos):
            return entries
        value, end = decoder.raw_decode(text, pos)
        entries.append((text.count("\n", 0, pos) + 1, value))
        pos = end


def _load_json_array(path: Path) -> list[dict[str, Any]]:
    """A WISE prompt file; a malformed file or entry is a DataError naming file:line."""
    if not path.is_file():
        raise DataError(f"WISE file missing: {path} (run `evalkit data fetch wise`)")
    rows = []
    for line, row in _array_entries(read_text_file(path), path):
        where = f"{path}:{line}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object")
        for key in ("Prompt", "Explanation", "Subcategory"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{where}: field '{key}' missing or not a string")
        if not isinstance(row.get("prompt_id"), int) or isinstance(row.get("prompt_id"), bool):
            raise DataError(f"{where}: 'prompt_id' missing or not an integer")
        rows.append(row)
    return rows


def load_prompts(root: Path, protocol: str, rewrite: bool = False) -> list[dict[str, Any]]:
    """All prompts of a protocol sorted by prompt_id; ``rewrite`` uses the legacy explicit rewrites."""
    variant = VARIANTS[protocol]
    if rewrite and protocol != "wise@legacy":
        raise EvalkitError("rewritten prompts exist only for wise@legacy")
    suffix = "_rewrite" if rewrite else ""
    rows: list[dict[str, Any]] = []
    for stem in variant.files:
        rows.extend(_load_json_array(root / variant.folder / f"{stem}{suffix}.json"))
    seen: set[int] = set()
    for row in rows:
        pid = row["prompt_id"]
        if pid in seen:
            raise DataError(f"{root / variant.folder}: duplicate prompt_id {pid}")
        if category_of(pid, variant.ranges) is None:
            raise DataError(f"{root / variant.folder}: prompt_id {pid} outside the id ranges of {protocol}")
        seen.add(pid)
    return sorted(rows, key=lambda r: r["prompt_id"])


def load_judge_prompts(root: Path, protocol: str) -> tuple[str, str]:
    """(system, user template with {Prompt} and {Explanation}) from judge_prompts/."""
    variant = VARIANTS[protocol]
    folder = root / "judge_prompts"
    try:
        system = (folder / variant.system_file).read_text(encoding="utf-8")
        user = (folder / variant.user_file).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"WISE judge prompt missing: {e.filename}") from None
    return system, user

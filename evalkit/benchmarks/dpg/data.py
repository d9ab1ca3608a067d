"""DPG-Bench data and protocols: prompts, the question CSV (both compat modes' readings) and the grid form."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.data import read_json_lines, read_text_file
from evalkit.errors import DataError, EvalkitError

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
    return [(p.stem, read_text_file(p)) for p in sorted(folder.glob("*.txt"))]


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


GRID_FILE = "grid.png"

"""WISE: world-knowledge prompts judged by an MLLM; categories by prompt_id range.

Protocols:
* ``wise@legacy`` (paper, BAGEL, AlphaGRPO): consistency/realism/aesthetic 0-2 per image,
  WiScore = (0.7 C + 0.2 R + 0.1 A) / 2, overall = 0.4 Cultural + 0.167 Time + 0.133 Space
  + 0.1 (Biology + Physics + Chemistry). BAGEL's tables used the unweighted mean of the 6 categories
  instead; it is reported as the separate key :data:`BAGEL_UNWEIGHTED_KEY`.
* ``wise@verified`` (WISE_Verified): one binary score, its own id ranges,
  overall = 0.4 Cultural + 0.12 x each other category.

:func:`official_calculate` reproduces the official score-file aggregation (``Calculate.py`` and
``calculate_verified.py``), including what it skips and when it refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.errors import DataError, EvalkitError
from evalkit.judges.base import Judge, JudgeFailure

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
MAX_ATTEMPTS = 3  # MAX_EXTRACT_RETRIES of the official evaluators

_LEGACY_LABELLED = re.compile(
    r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*:?\s*(\d)", re.IGNORECASE
)
_LEGACY_KEYS = ("consistency", "realism", "aesthetic_quality")
_VERIFIED_LABELLED = re.compile(r"\*{0,2}Score\*{0,2}\s*:?\s*([01])\b", re.IGNORECASE)
_SEPARATORS = re.compile(r"[ \t\r\n,]*")
_VERIFIED_BARE = re.compile(r"^\s*([01])\s*$", re.MULTILINE)


def category_of(prompt_id: int, ranges: Mapping[str, tuple[int, int]]) -> str | None:
    """The category whose id range holds prompt_id, or None."""
    for cat, (lo, hi) in ranges.items():
        if lo <= prompt_id <= hi:
            return cat
    return None


# ----------------------------------------------------------------------------------------- replies


def parse_legacy_reply(reply: str) -> dict[str, float]:
    """Official legacy extraction: labelled scores anywhere (one digit, last occurrence wins); only when
    no label is found, the first three lines holding a single digit 0-2. May return a partial dict."""
    scores: dict[str, float] = {}
    for m in _LEGACY_LABELLED.finditer(reply):
        scores[m.group(1).lower().replace(" ", "_")] = float(m.group(2))
    if scores:
        return scores
    digits = [ln.strip() for ln in reply.split("\n") if re.fullmatch(r"[0-2]", ln.strip())]
    if len(digits) >= 3:
        return {k: float(d) for k, d in zip(_LEGACY_KEYS, digits[:3], strict=True)}
    return {}


def strip_think(reply: str) -> str:
    """Verified evaluator: drop <think> blocks (and a dangling </think>) before parsing."""
    reply = re.sub(r"<think>.*?</think>\s*", "", reply, flags=re.DOTALL)
    return re.sub(r"</think>\s*", "", reply).strip()


def parse_verified_reply(reply: str) -> dict[str, float]:
    """Official verified extraction: first 'Score: 0|1', else exactly one bare 0/1 line."""
    text = strip_think(reply)
    m = _VERIFIED_LABELLED.search(text)
    if m:
        return {"score": float(m.group(1))}
    bare = _VERIFIED_BARE.findall(text)
    return {"score": float(bare[0])} if len(bare) == 1 else {}


def required_keys(protocol: str) -> tuple[str, ...]:
    return _LEGACY_KEYS if protocol == "wise@legacy" else ("score",)


def reply_accepted(scores: Mapping[str, float], protocol: str) -> bool:
    """The official accept rule: every required key present (else the judge is asked again)."""
    return all(k in scores for k in required_keys(protocol))


def out_of_range(scores: Mapping[str, float], protocol: str) -> list[str]:
    """Keys whose value is off the protocol's scale (0-2 legacy, 0/1 verified); the official scripts
    keep such values, evalkit re-asks and finally records a failure."""
    top = 2.0 if protocol == "wise@legacy" else 1.0
    return [k for k in required_keys(protocol) if not 0.0 <= scores[k] <= top]


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    """Legacy per-image score in [0, 1]."""
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2


def weighted_overall(category_scores: Mapping[str, float], protocol: str) -> float:
    """The official weighted overall (same expression order as the official scripts)."""
    w = VARIANTS[protocol].weights
    total = 0.0
    for cat in CATEGORIES:
        total += w[cat] * category_scores[cat]
    return total


# --------------------------------------------------------------------------------------- data


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
    for line, row in _array_entries(path.read_text(encoding="utf-8"), path):
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


def build_user_text(template: str, prompt: str, explanation: str) -> str:
    """Fill the two fields by plain replacement (the texts contain other braces)."""
    return template.replace("{Prompt}", prompt).replace("{Explanation}", explanation)


# ----------------------------------------------------------------------------------------- scoring


class WISEScorer(SampleScorer):
    """One chat request per image; re-asks (up to 3 attempts) while a required score is missing."""

    def __init__(
        self,
        judge: Judge,
        system: str,
        user_template: str,
        protocol: str = "wise@legacy",
        max_attempts: int = MAX_ATTEMPTS,
        max_tokens: int | None = None,
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown WISE protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        self.judge, self.system, self.user_template = judge, system, user_template
        self.protocol, self.max_attempts = protocol, max_attempts
        self.max_tokens = max_tokens or VARIANTS[protocol].max_tokens

    def config(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "judge": self.judge.config(),
            "max_attempts": self.max_attempts,
            **self.decoding(),
        }

    def decoding(self) -> dict[str, Any]:
        return {"temperature": 0.0, "max_tokens": self.max_tokens}

    def messages(self, sample: Sample, image: Image.Image) -> list[dict[str, Any]]:
        text = build_user_text(self.user_template, sample.prompt, sample.metadata["explanation"])
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "image": image}]},
        ]

    def parse(self, reply: str) -> dict[str, float]:
        return parse_legacy_reply(reply) if self.protocol == "wise@legacy" else parse_verified_reply(reply)

    def score_one(self, sample: Sample, image: Image.Image) -> dict[str, Any]:
        base = {
            "prompt_id": sample.metadata["prompt_id"],
            "category": sample.metadata["category"],
            "subcategory": sample.metadata["subcategory"],
        }
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = self.judge.chat(self.messages(sample, image), **self.decoding())
            except JudgeFailure as e:
                return {**base, "failed": True, "reason": e.reason, "attempts": attempt}
            scores = self.parse(reply)
            if not reply_accepted(scores, self.protocol):
                problem = f"missing {[k for k in required_keys(self.protocol) if k not in scores]}"
            elif out_of_range(scores, self.protocol):
                problem = f"out of range {out_of_range(scores, self.protocol)}"
            else:
                return {
                    **base,
                    "failed": False,
                    **self.record_scores(scores),
                    "attempts": attempt,
                    "reply": reply,
                }
        reason = f"unusable judge reply after {self.max_attempts} attempts ({problem})"
        return {**base, "failed": True, "attempts": self.max_attempts, "reason": reason}

    def record_scores(self, scores: Mapping[str, float]) -> dict[str, float]:
        if self.protocol == "wise@legacy":
            c, r, a = (scores[k] for k in _LEGACY_KEYS)
            return {"consistency": c, "realism": r, "aesthetic_quality": a, "wiscore": wiscore(c, r, a)}
        return {"score": scores["score"], "wiscore": scores["score"]}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        return [self.score_one(s, im) for s, im in zip(samples, images, strict=True)]


def aggregate_records(records: Iterable[Mapping[str, Any]], protocol: str) -> dict[str, Any]:
    """Category means, the official weighted overall (all 6 categories needed), BAGEL's unweighted mean."""
    variant = VARIANTS[protocol]
    per_cat: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    seen: set[int] = set()
    n_failed = 0
    for r in records:
        if r.get("failed"):
            n_failed += 1
            continue
        cat = category_of(int(r["prompt_id"]), variant.ranges)
        if cat is None:
            raise DataError(f"record with prompt_id {r['prompt_id']} outside the {protocol} id ranges")
        per_cat[cat].append(float(r["wiscore"]))
        seen.add(int(r["prompt_id"]))
    means = {c: (sum(v) / len(v) if v else None) for c, v in per_cat.items()}
    complete_cats = all(v is not None for v in means.values())
    overall = weighted_overall(means, protocol) if complete_cats else None  # type: ignore[arg-type]
    out: dict[str, Any] = {COLUMN_NAMES[c]: means[c] for c in CATEGORIES}
    out["Overall"] = overall
    if protocol == "wise@legacy":
        vals = list(means.values())
        out[BAGEL_UNWEIGHTED_KEY] = sum(vals) / len(vals) if complete_cats else None  # type: ignore[arg-type]
    expected = {i for lo, hi in variant.ranges.values() for i in range(lo, hi + 1)}
    out.update(
        {
            "n_scored": len(seen),
            "n_failed": n_failed,
            "n_missing": len(expected - seen),
            "category_num_samples": {c: len(v) for c, v in per_cat.items()},
            "protocol": protocol,
        }
    )
    return out


class WISE(Benchmark):
    """WISE under wise@legacy (default) or wise@verified; one image per prompt named by prompt_id."""

    name = "wise"
    needs_judge = True  # `evalkit run` refuses to start without --judge
    images_per_sample = 1

    def __init__(
        self, data_dir: Path | str, protocol: str = "wise@legacy", think: bool = False, rewrite: bool = False
    ):
        protocol = DEFAULT_PROTOCOL if protocol == "wise" else protocol  # `evalkit run wise`
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown WISE protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        self.root = Path(data_dir) / "wise"
        self.protocol, self.think, self.rewrite = protocol, think, rewrite
        self.columns = [COLUMN_NAMES[c] for c in CATEGORIES] + ["Overall"]

    def samples(self) -> list[Sample]:
        ranges = VARIANTS[self.protocol].ranges
        return [
            Sample(
                id=str(row["prompt_id"]),
                prompt=row["Prompt"],
                metadata={
                    "prompt_id": row["prompt_id"],
                    "category": category_of(row["prompt_id"], ranges),
                    "subcategory": row["Subcategory"],
                    "explanation": row["Explanation"],
                },
            )
            for row in load_prompts(self.root, self.protocol, self.rewrite)
        ]

    def request_options(self, sample: Sample) -> dict[str, Any]:
        """--think is passed through; generators without a think mode ignore or refuse it."""
        return {"think": True} if self.think else {}

    def make_scorer(self, **options: Any) -> WISEScorer:
        """options: judge (required), max_attempts (3), max_tokens (protocol: 2000 legacy, 500 verified)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("WISE needs a judge (--judge hf:<id> or --judge openai:<model>)")
        system, user = load_judge_prompts(self.root, self.protocol)
        return WISEScorer(judge, system, user, protocol=self.protocol, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        out = aggregate_records(records, self.protocol)
        return {**out, "table": {c: out[c] for c in self.columns}, "n_records": len(records)}


# ------------------------------------------------------------------------ official score-file mode


def _scan_score_file(path: Path, protocol: str) -> tuple[dict[str, list[float]], set[int]] | None:
    """Scores per category and present ids of one official score file, skipping the lines the script
    skips; None where the script gives up on the whole file (unreadable, or a JSON line that is not an
    object, which raises outside its per-line handler)."""
    ranges = VARIANTS[protocol].ranges
    scores: dict[str, list[float]] = {}
    present: set[int] = set()
    try:
        with path.open(encoding="utf-8") as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            return None
        pid = data.get("prompt_id")
        if pid is None or not isinstance(pid, int):
            continue
        present.add(pid)
        value = _line_wiscore(data, protocol)
        cat = category_of(pid, ranges) if value is not None else None
        if cat is not None:
            scores.setdefault(cat, []).append(value)  # type: ignore[arg-type]
    return scores, present


def _line_wiscore(data: Mapping[str, Any], protocol: str) -> float | None:
    """WiScore of one score line, or None where the official script skips it for averaging."""
    if protocol == "wise@legacy":
        vals = [data.get(k) for k in _LEGACY_KEYS]
        if not all(isinstance(v, int | float) for v in vals):
            return None
        return wiscore(*vals)  # type: ignore[arg-type]
    score = data.get("score")
    if not isinstance(score, int | float) or score not in (0, 1):
        return None
    return float(score)


def official_calculate(
    files: Sequence[Path | str], category: str = "all", protocol: str = "wise@legacy"
) -> dict[str, Any]:
    """The official aggregation of judge score files (``*_scores_results.jsonl``).

    Returns status (``ok`` | ``categories_only`` | ``aborted_missing_prompt_ids`` | ``no_valid_data``),
    category_scores, category_num_samples, overall_wiscore, per_file_reports and missing_prompt_ids.
    """
    if category not in CATEGORY_ARG_CATEGORIES:
        raise EvalkitError(f"unknown --category '{category}' (known: {', '.join(CATEGORY_ARG_CATEGORIES)})")
    ranges = VARIANTS[protocol].ranges
    single = category if len(files) == 1 else None
    results: list[tuple[str, dict[str, list[float]], set[int]]] = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            continue
        scanned = _scan_score_file(path, protocol)
        if scanned is None:
            continue
        scores, present = scanned
        if single and single != "all" and protocol == "wise@legacy":
            needed = {
                i for c in CATEGORY_ARG_CATEGORIES[single] for i in range(ranges[c][0], ranges[c][1] + 1)
            }
            if needed - present:
                continue  # the legacy script rejects the file
        results.append((str(file), scores, present))
    empty = {
        "category_scores": None,
        "category_num_samples": None,
        "overall_wiscore": None,
        "per_file_reports": None,
        "missing_prompt_ids": None,
    }
    if not results:
        return {**empty, "status": "no_valid_data"}
    all_ids = set(range(1, 1001))
    missing = sorted(all_ids - set().union(*(p for _, _, p in results))) if category == "all" else []
    if missing and protocol == "wise@legacy":
        return {**empty, "status": "aborted_missing_prompt_ids", "missing_prompt_ids": missing}
    merged: dict[str, list[float]] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name, scores, _ in results:
        reports[name] = {
            "average": {c: sum(v) / len(v) for c, v in scores.items() if v},
            "num_processed_samples": {c: len(v) for c, v in scores.items() if v},
        }
        for c, v in scores.items():
            merged.setdefault(c, []).extend(v)
    cat_scores = {c: sum(v) / len(v) for c, v in merged.items() if v}
    overall = None
    if category == "all" and all(c in cat_scores for c in CATEGORIES):
        overall = weighted_overall(cat_scores, protocol)
    return {
        "status": "ok" if overall is not None else "categories_only",
        "category_scores": cat_scores,
        "category_num_samples": {c: len(v) for c, v in merged.items() if v},
        "overall_wiscore": overall,
        "per_file_reports": reports,
        "missing_prompt_ids": missing or None,
    }

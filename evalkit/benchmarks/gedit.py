"""GEdit-Bench-EN: instruction-based editing judged with VIEScore on any Judge.

Per sample the judge is asked twice: SC on [source, edited] (editing success, over-editing) and PQ on the
edited image (naturalness, artifacts); the edited image is resized to the source size first.
SC = min of the SC scores, PQ = min of the PQ scores, O = sqrt(SC x PQ). Per task type the means of SC,
PQ and O; overall = unweighted mean over the 11 task types (so O is not sqrt(mean SC x mean PQ)).

Reply parsing follows VIEScore's ``mllm_output_to_dict``, and an unparseable first answer re-sends both
requests once, as the official loop does. Where the official code then substitutes a random integer
(``give_up_parsing``), or keeps re-asking forever, evalkit records a failure instead; a second answer
that parses normally (a bare "[a, b]") is used and flagged ``official_would_randomize``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.data import read_json_lines
from evalkit.errors import DataError, EvalkitError
from evalkit.judges.base import Judge, JudgeFailure

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
DELIMITER = "||V^=^V||"
RATE_LIMIT = "rate_limit_exceeded"
DATA_FILE = "data.jsonl"
HUB_DATASET = "stepfun-ai/GEdit-Bench"
DATA_FIELDS = ("task_type", "key", "instruction", "instruction_language", "Intersection_exist", "input_image")


# --------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Parsed:
    """Outcome of parsing one VIEScore reply.

    ``ok`` says a value was parsed into ``data`` (usually a dict with 'score', but the JSON repair may
    yield anything); ``rate_limited`` marks the exact text 'rate_limit_exceeded'; ``random_fallback`` marks
    where the official code would draw a random score.
    """

    ok: bool = False
    data: Any = None
    rate_limited: bool = False
    random_fallback: bool = False

    @property
    def usable(self) -> bool:
        """The official loop stops re-asking once the parse result is not False."""
        return self.ok or self.rate_limited or self.random_fallback


_FAILED = Parsed()


def _fix_json(text: str) -> str:
    """VIEScore's JSON repair: quote bare keys, wrap numeric values in a list, quote other values."""
    fixed = re.sub(r"(\w+):", r'"\1":', text)

    def fmt(m: re.Match[str]) -> str:
        key, value, end = m.group(1), m.group(2).strip(), m.group(3)
        if re.match(r"^-?\d+(\.\d+)?$", value):
            value = f"[{value}]"
        elif not re.match(r"^(true|false|null)$", value, re.IGNORECASE):
            value = f'"{value}"'
        return f"{key}: {value}{end}"

    return re.sub(r'(".*?"):(.*?)(,|})', fmt, fixed)


def _loads_json_body(body: str) -> Parsed:
    """Parse the extracted JSON text; a scalar score becomes a list; else one repair attempt."""
    text = body.strip().replace("\n", "")
    try:
        data = json.loads(text)
        if not isinstance(data["score"], list):
            data["score"] = [data["score"]]
        return Parsed(ok=True, data=data)
    except Exception:  # noqa: BLE001 - the official code catches everything here
        try:
            return Parsed(ok=True, data=json.loads(_fix_json(text)))
        except Exception:  # noqa: BLE001
            return _FAILED


def _bare_scores(text: str) -> Parsed:
    """No braces: a '[a, b]' slice (first '[' to last ']') or a bare integer 0-10."""
    start, end = text.find("["), text.rfind("]") + 1
    chunk = text[start:end]
    if re.match(r"^\[\d+, ?\d+\]$", chunk):
        try:
            scores = json.loads(chunk)
        except json.JSONDecodeError:
            return _FAILED
        return Parsed(
            ok=True, data={"score": scores, "reasoning": "System: output is simply a list of scores"}
        )
    try:
        number = int(text)
    except ValueError:
        return _FAILED
    if 0 <= number <= 10:
        return Parsed(ok=True, data={"score": [number], "reasoning": "System: output is simply a number"})
    return _FAILED


def parse_reply(text: str, give_up: bool = False) -> Parsed:
    """VIEScore reply parsing. ``give_up`` is the official second attempt, where text without braces
    would get a random score (reported as ``random_fallback``, never drawn here)."""
    if text == RATE_LIMIT:
        return Parsed(rate_limited=True)
    if text.count(DELIMITER) == 2:
        start, end = text.find(DELIMITER) + len(DELIMITER), text.rfind(DELIMITER)
        return _loads_json_body(text[start:end]) if start != end else _FAILED
    start, end = text.find("{"), text.rfind("}") + 1
    if start == -1 or end == 0:
        return Parsed(random_fallback=True) if give_up else _bare_scores(text)
    return _loads_json_body(text[start:end]) if start != end else _FAILED


def min_score(data: Any) -> float:
    """min of the 'score' list; ValueError for anything the official code would crash on."""
    if not isinstance(data, dict) or "score" not in data:
        raise ValueError("reply has no 'score'")
    scores = data["score"]
    if not isinstance(scores, list) or not scores:
        raise ValueError(f"'score' is not a non-empty list: {scores!r}")
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
        raise ValueError(f"non-numeric score in {scores!r}")
    value = min(scores)
    if value < 0 or math.isnan(value):
        raise ValueError(f"score {value} < 0 (sqrt undefined)")
    return value


# -------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class VieOutcome:
    """One sample's VIEScore result; status is ok | exception | random_fallback | unparseable."""

    status: str
    sc: float | None = None
    pq: float | None = None
    o: float | None = None
    reason: str | None = None
    sc_requests: int = 0
    pq_requests: int = 0
    sc_reply: str | None = None
    pq_reply: str | None = None
    official_random: tuple[str, ...] = ()


def vie_evaluate(ask_sc: Callable[[], str], ask_pq: Callable[[], str], rounds: int = 2) -> VieOutcome:
    """The official VIEScore.evaluate loop, with failures instead of random scores or endless retries.

    Both requests are re-sent while either answer is unparseable (the answers of the last round are
    used). Every round parses normally; ``official_random`` names the calls of a later round that the
    official give-up parsing would have replaced by a random score. Raises JudgeFailure from ask_*.
    """
    sc = pq = Parsed()
    sc_reply = pq_reply = ""
    official_random: tuple[str, ...] = ()
    n = 0
    for n in range(1, rounds + 1):  # noqa: B007 - n is the request count afterwards
        sc_reply, pq_reply = ask_sc(), ask_pq()
        sc, pq = parse_reply(sc_reply), parse_reply(pq_reply)
        if n > 1:
            replies = (("SC", sc_reply), ("PQ", pq_reply))
            official_random = tuple(
                k for k, text in replies if parse_reply(text, give_up=True).random_fallback
            )
        if sc.usable and pq.usable:
            break
    common = {
        "sc_requests": n,
        "pq_requests": n,
        "sc_reply": sc_reply,
        "pq_reply": pq_reply,
        "official_random": official_random,
    }
    if not (sc.usable and pq.usable):
        if official_random:
            which = "/".join(official_random)
            reason = f"unparseable {which} reply (the official code substitutes a random score)"
            return VieOutcome("random_fallback", reason=reason, **common)
        reason = f"unparseable judge reply after {n} rounds (the official loop re-asks forever)"
        return VieOutcome("unparseable", reason=reason, **common)
    if sc.rate_limited or pq.rate_limited:
        return VieOutcome("exception", reason="ValueError: rate_limit_exceeded", **common)
    try:
        sc_value, pq_value = min_score(sc.data), min_score(pq.data)
    except ValueError as e:
        return VieOutcome("exception", reason=f"invalid score: {e}", **common)
    return VieOutcome("ok", sc=sc_value, pq=pq_value, o=math.sqrt(sc_value * pq_value), **common)


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


def _jpeg_roundtrip(image: Image.Image) -> Image.Image:
    """The official GPT wrapper sends JPEG-encoded images; the judge sees the same pixels here."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


class GEditScorer(SampleScorer):
    """VIEScore SC + PQ requests per edited image, on any Judge."""

    def __init__(
        self,
        judge: Judge,
        sc_template: str,
        pq_prompt: str,
        rounds: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 1400,
        jpeg: bool = True,
    ):
        self.judge, self.sc_template, self.pq_prompt = judge, sc_template, pq_prompt
        self.rounds, self.temperature, self.max_tokens, self.jpeg = rounds, temperature, max_tokens, jpeg

    def config(self) -> dict[str, Any]:
        return {
            "judge": self.judge.config(),
            "rounds": self.rounds,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "jpeg": self.jpeg,
            "prompts": "VIEScore tie 0shot",
        }

    def _ask(self, text: str, images: list[Image.Image]) -> Callable[[], str]:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        content += [{"type": "image", "image": im} for im in images]
        messages = [{"role": "user", "content": content}]
        return lambda: self.judge.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens)

    def evaluate(self, source: Image.Image, edited: Image.Image, instruction: str) -> VieOutcome:
        """SC on [source, edited-resized-to-source], PQ on the edited image."""
        source = source.convert("RGB")
        edited = edited.convert("RGB").resize(source.size)
        if self.jpeg:
            source, edited = _jpeg_roundtrip(source), _jpeg_roundtrip(edited)
        sc_text = self.sc_template.replace("<instruction>", instruction)
        return vie_evaluate(
            self._ask(sc_text, [source, edited]), self._ask(self.pq_prompt, [edited]), self.rounds
        )

    def score_one(self, sample: Sample, edited: Image.Image) -> dict[str, Any]:
        meta = sample.metadata
        base = {
            "task_type": meta["task_type"],
            "key": meta["key"],
            "language": meta["language"],
            "intersection": bool(meta["intersection"]),
        }
        if sample.input_image is None:
            return {**base, "failed": True, "reason": "sample has no source image"}
        with Image.open(sample.input_image) as src:
            source = src.convert("RGB")
        try:
            out = self.evaluate(source, edited, sample.prompt)
        except JudgeFailure as e:
            return {**base, "failed": True, "reason": e.reason}
        replies = {"sc_reply": out.sc_reply, "pq_reply": out.pq_reply, "rounds": out.sc_requests}
        if out.status != "ok":
            return {**base, "failed": True, "reason": out.reason, "status": out.status, **replies}
        if out.official_random:  # the official code would have used a random number here instead
            replies["official_would_randomize"] = list(out.official_random)
        return {**base, "failed": False, "SC": out.sc, "PQ": out.pq, "O": out.o, **replies}

    def score_images(self, samples: list[Sample], images: list[Image.Image]) -> list[dict[str, Any]]:
        if len(samples) != len(images):
            raise EvalkitError(f"{len(samples)} samples but {len(images)} images")
        return [self.score_one(s, im) for s, im in zip(samples, images, strict=True)]


# ------------------------------------------------------------------------------------- aggregation


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate_records(
    records: Iterable[Mapping[str, Any]], language: str = "en", intersection_only: bool = False
) -> dict[str, Any]:
    """Per-task means and the unweighted mean over the 11 task types (None where a task is empty)."""
    per_task: dict[str, list[Mapping[str, Any]]] = {t: [] for t in TASK_TYPES}
    for r in records:
        if r.get("failed") or r["language"] != language or (intersection_only and not r["intersection"]):
            continue
        if r["task_type"] not in per_task:
            raise DataError(f"unknown GEdit-Bench task type '{r['task_type']}'")
        per_task[r["task_type"]].append(r)
    tasks: dict[str, dict[str, float | None]] = {}
    for t, rows in per_task.items():
        sc = [float(r["SC"]) for r in rows]
        pq = [float(r["PQ"]) for r in rows]
        o = [math.sqrt(a * b) for a, b in zip(sc, pq, strict=True)]
        tasks[t] = {"SC": _mean(sc), "PQ": _mean(pq), "O": _mean(o), "n": len(rows)}
    overall: dict[str, float | None] = {}
    for m in ("SC", "PQ", "O"):
        vals = [tasks[t][m] for t in TASK_TYPES]
        overall[m] = None if any(v is None for v in vals) else sum(vals) / len(vals)  # type: ignore[misc]
    return {"per_task": tasks, "overall": overall}


def summarize(
    records: Sequence[Mapping[str, Any]], language: str = "en", subset: str = "fullset"
) -> dict[str, Any]:
    """Table columns G_SC, G_PQ, G_O (of the chosen subset), per-task O, both subsets in detail, counts."""
    if subset not in SUBSETS:
        raise EvalkitError(f"unknown subset '{subset}' (known: {', '.join(SUBSETS)})")
    full = aggregate_records(records, language)
    inter = aggregate_records(records, language, intersection_only=True)
    chosen = inter if subset == "intersection" else full
    table = {f"G_{m}": chosen["overall"][m] for m in ("SC", "PQ", "O")}
    out: dict[str, Any] = {**table, "table": table}
    out.update({f"O/{t}": chosen["per_task"][t]["O"] for t in TASK_TYPES})
    lang_records = [r for r in records if r.get("language") == language]
    n_failed = sum(1 for r in lang_records if r.get("failed"))
    out.update(
        {
            "fullset": full,
            "intersection": inter,
            "subset": subset,
            "language": language,
            "n_records": len(lang_records),
            "n_scored": len(lang_records) - n_failed,
            "n_failed": n_failed,
        }
    )
    return out


def load_official_csv(path: Path, task_type: str) -> list[dict[str, Any]]:
    """Records from one per-task CSV written by the official test_gedit_score.py."""
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                sc, pq = float(row["sementics_score"]), float(row["quality_score"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}:{n}: missing or non-numeric sementics_score/quality_score") from None
            out.append(
                {
                    "task_type": task_type,
                    "language": row.get("instruction_language"),
                    "intersection": row.get("intersection_exist") == "True",
                    "SC": sc,
                    "PQ": pq,
                    "O": math.sqrt(sc * pq) if sc * pq >= 0 else None,
                    "failed": False,
                }
            )
    return out


def load_official_csvs(folder: Path, model: str) -> list[dict[str, Any]]:
    """All ``<model>_<task>_gpt_score.csv`` files of a folder as records (the statistics script's input)."""
    records = []
    for task in TASK_TYPES:
        path = folder / f"{model}_{task}_gpt_score.csv"
        if path.is_file():
            records.extend(load_official_csv(path, task))
    return records


# ------------------------------------------------------------------------------------------- data


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


def fetch_from_hub(dest: Path, revision: str | None = None) -> int:
    """Download the Hub dataset (needs `datasets` and network) and write the local copy."""
    try:
        import datasets
    except ImportError:
        raise EvalkitError("fetching GEdit-Bench needs `datasets` (pip install 'evalkit[judge]')") from None
    split = datasets.load_dataset(HUB_DATASET, split="train", revision=revision)
    return export_rows(split, dest)


class GEdit(Benchmark):
    """GEdit-Bench (EN by default); samples carry the source image for editing-capable generators."""

    name = "gedit"
    needs_judge = True  # `evalkit run` refuses to start without --judge
    protocol = "gedit"
    images_per_sample = 1

    def __init__(
        self, data_dir: Path | str, protocol: str = "gedit", language: str = "en", subset: str = "fullset"
    ):
        if protocol not in PROTOCOLS:
            raise EvalkitError(f"unknown GEdit protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
        if language not in LANGUAGES:
            raise EvalkitError(f"unknown language '{language}' (known: {', '.join(LANGUAGES)})")
        if subset not in SUBSETS:
            raise EvalkitError(f"unknown subset '{subset}' (known: {', '.join(SUBSETS)})")
        self.root = Path(data_dir) / "gedit_bench"
        self.protocol, self.language, self.subset = protocol, language, subset
        self.columns = ["G_SC", "G_PQ", "G_O"]

    def samples(self) -> list[Sample]:
        out = []
        for row in load_rows(self.root):
            if row["instruction_language"] != self.language:
                continue
            if self.subset == "intersection" and not row["Intersection_exist"]:
                continue
            meta = {
                "task_type": row["task_type"],
                "key": row["key"],
                "language": row["instruction_language"],
                "intersection": bool(row["Intersection_exist"]),
            }
            out.append(
                Sample(
                    id=f"{row['task_type']}__{row['key']}",
                    prompt=row["instruction"],
                    metadata=meta,
                    input_image=self.root / row["input_image"],
                )
            )
        return out

    def make_scorer(self, **options: Any) -> GEditScorer:
        """options: judge (required), rounds (2), temperature (0.0), max_tokens (1400), jpeg (True)."""
        judge = options.pop("judge", None)
        if judge is None:
            raise EvalkitError("GEdit-Bench needs a judge (--judge hf:<id> or --judge openai:<model>)")
        sc_template, pq_prompt = load_prompts(self.root)
        return GEditScorer(judge, sc_template, pq_prompt, **options)

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {**summarize(records, self.language, self.subset), "protocol": self.protocol}

"""A static HTML sample viewer over run folders: `build_report(run_dirs, out_dir)` -> out_dir/index.html.

The page is one self-contained file (data, script and style inline; no server, no CDN) that opens from
file://. Images stay in the run folders and are referenced by relative paths, so a 553 x 4 image run is
written in well under a second; move the report together with the runs, or regenerate it.

Every benchmark's records are read into one shape per image (verdict, 0-1 score, reason, judge questions,
detections, SRR rounds), so the page needs no benchmark knowledge. Samples are matched across runs by
(protocol, sample id): the same prompt and, for runs with the same global seed, the same image seeds.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evalkit.errors import EvalkitError
from evalkit.runs import read_jsonl, safe_name

ASSETS = Path(__file__).resolve().parent / "viewer"
DISAGREE_SPREAD = 0.25  # score-only benchmarks: runs disagree when their 0-1 sample scores differ this much


def _column_categories() -> dict[str, dict[str, str]]:
    """Benchmark columns that name a sample category under another name (column -> category key)."""
    from evalkit.benchmarks.geneval.aggregate import COLUMNS as GENEVAL_COLUMNS
    from evalkit.benchmarks.wise.data import COLUMN_NAMES as WISE_COLUMNS

    return {
        "geneval": {column: tag for tag, column in GENEVAL_COLUMNS.items()},
        "wise": {column: category for category, column in WISE_COLUMNS.items()},
    }


@dataclass
class LoadedRun:
    """One run folder as the viewer needs it."""

    root: Path
    info: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    label: str = ""

    @property
    def protocol(self) -> str:
        return str(self.summary.get("protocol") or self.info.get("protocol") or self.root.parent.name)

    @property
    def benchmark(self) -> str:
        return str(self.summary.get("benchmark") or self.info.get("benchmark") or self.protocol.split("@")[0])


@dataclass
class Report:
    """What the page shows; `to_json` is embedded in index.html."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "tables": self.tables, "samples": self.samples}


# ------------------------------------------------------------------------------------------------ finding
def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders (those with run.json) given directly or anywhere below a folder (ablate-reward output)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise EvalkitError(f"{path} is not a folder; give run folders or a folder that holds them")
        if (path / "run.json").exists():
            found.append(path)
            continue
        below = sorted(p.parent for p in path.rglob("run.json"))
        if not below:
            raise EvalkitError(f"{path} holds no evalkit run (no run.json below it)")
        found.extend(below)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def load_run(root: Path) -> LoadedRun:
    info = json.loads((root / "run.json").read_text())
    summary_path = root / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    records: dict[str, dict[str, Any]] = {}
    for path in [root / "records.jsonl", *sorted(root.glob("records.rank*.jsonl"))]:
        for rec in read_jsonl(path):
            records.setdefault(str(rec.get("id")), rec)
    return LoadedRun(root, info, summary, list(records.values()))


def _label(run: LoadedRun) -> str:
    label = str(run.info.get("label") or run.info.get("model") or run.root.name)
    srr = (run.info.get("generation") or {}).get("srr")
    if srr:
        label += f" +SRR(K={srr.get('rounds')}, {srr.get('gate')})"
    return label


def _unique_labels(runs: list[LoadedRun]) -> None:
    """Two runs of a protocol may share a model name (other seed, options): the folder name then tells them
    apart."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (run.protocol, _label(run))
        counts[key] = counts.get(key, 0) + 1
    for run in runs:
        base = _label(run)
        run.label = base if counts[(run.protocol, base)] == 1 else f"{base} [{run.root.name}]"


# ------------------------------------------------------------------------------------------------ records
def _category(bench: str, rec: dict[str, Any]) -> str:
    if bench == "tiif" and rec.get("dimension"):
        return f"{rec['dimension']} ({rec.get('length', '?')})"
    for key in ("tag", "dimension", "category", "task_type"):
        if rec.get(key):
            return str(rec[key])
    meta = rec.get("metadata")
    if isinstance(meta, dict) and meta.get("tag"):
        return str(meta["tag"])
    return bench


def _score(bench: str, rec: dict[str, Any]) -> tuple[str, float | None, str]:
    """(verdict, 0-1 score, how the score reads) of one scored record."""
    if rec.get("failed"):
        return "err", None, ""  # the badge says it; the reason follows
    if isinstance(rec.get("correct"), bool):
        return (
            ("pass" if rec["correct"] else "fail"),
            float(rec["correct"]),
            "correct" if rec["correct"] else "wrong",
        )
    if isinstance(rec.get("correct"), int) and rec.get("total"):
        frac = rec["correct"] / rec["total"]
        return ("pass" if frac == 1 else "fail"), frac, f"{rec['correct']}/{rec['total']} answers right"
    if rec.get("cell_score") is not None:
        value = float(rec["cell_score"])
        return ("pass" if value == 1 else "fail"), value, f"cell score {value:.2f}"
    if rec.get("wiscore") is not None:
        value = float(rec["wiscore"])
        return "na", value, f"WiScore {value:.3f}"
    if rec.get("O") is not None:
        value = float(rec["O"])
        return "na", value / 10, f"O {value:.2f} (SC {rec.get('SC')}, PQ {rec.get('PQ')})"
    if isinstance(rec.get("score"), int | float):
        return "na", None, f"score {rec['score']}"
    return "na", None, "not scored"


def _questions(rec: dict[str, Any]) -> list[list[Any]]:
    """[question, answer, P(yes), expected] rows from whichever form the benchmark records."""
    rows: list[list[Any]] = []
    questions = rec.get("questions")
    if isinstance(questions, list) and questions and isinstance(questions[0], str):
        preds, gts = rec.get("preds") or [], rec.get("gt_answers") or []
        for i, q in enumerate(questions):
            rows.append(
                [q.strip(), preds[i] if i < len(preds) else None, None, gts[i] if i < len(gts) else None]
            )
    elif isinstance(questions, list):  # DVReward details: {question, tag, score = P(yes), failure}
        for q in questions:
            if isinstance(q, dict):
                p = q.get("score")
                answer = q.get("failure") or (None if p is None else ("yes" if p >= 0.5 else "no"))
                rows.append([f"{q.get('question')} [{q.get('tag')}]", answer, p, None])
    if rec.get("answers") and rec.get("l2"):  # DPG-Bench: a tuple per proposition, answered per cell
        for l2, pid, ans, zeroed in zip(
            rec["l2"], rec.get("pids", []), rec["answers"], rec.get("zeroed", []), strict=False
        ):
            rows.append(
                [
                    f"#{pid} {l2}",
                    ans,
                    rec.get("p_yes", {}).get(str(pid)) if isinstance(rec.get("p_yes"), dict) else None,
                    f"scored {zeroed:g}",
                ]
            )
    return rows


def _boxes(rec: dict[str, Any]) -> list[list[Any]]:
    """GenEval detections: [class, x1, y1, x2, y2, confidence, colour or None] in image pixels."""
    details = rec.get("details")
    if not isinstance(details, dict):
        return []
    colors = rec.get("colors") or {}
    out = []
    for cls, boxes in details.items():
        for i, box in enumerate(boxes or []):
            if isinstance(box, list | tuple) and len(box) >= 4:
                colour = colors.get(cls, [])[i] if i < len(colors.get(cls, [])) else None
                conf = round(float(box[4]), 3) if len(box) > 4 else None
                out.append([cls, *(round(float(v), 1) for v in box[:4]), conf, colour])
    return out


_SKIP = {
    "id", "sample_id", "k", "prompt", "protocol", "scorer_hash", "time", "failed", "reason", "correct", "total",
    "details", "colors", "metadata", "questions", "preds", "gt_answers", "answers", "l2", "pids", "raw", "zeroed",
    "reply", "sc_reply", "pq_reply", "tag", "dimension", "category", "task_type",
}  # fmt: skip


def _extra(rec: dict[str, Any]) -> dict[str, Any]:
    """Small scalar fields worth a glance (scores, attempts, template...)."""
    return {
        k: v
        for k, v in sorted(rec.items())
        if k not in _SKIP and isinstance(v, str | int | float | bool) and len(str(v)) < 80
    }


def _replies(rec: dict[str, Any]) -> list[list[str]]:
    return [[key, str(rec[key])] for key in ("reply", "sc_reply", "pq_reply") if rec.get(key)]


# ------------------------------------------------------------------------------------------------ images
class _Paths:
    """Relative, URL-quoted paths from the report folder to the run folders."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir.resolve()

    def __call__(self, path: Path) -> str:
        return quote(Path(os.path.relpath(path, self.out_dir)).as_posix())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _srr_rounds(folder: Path, k: int, srr: dict[str, Any], rel: _Paths) -> list[dict[str, Any]]:
    rounds = []
    for step in srr.get("history", []):
        r = step.get("round")
        meta = _read_json(folder / f"{k}.r{r}.json")
        gate = meta.get("gate", {})
        details = gate.get("reward_details") or {}
        rounds.append(
            {
                "r": r,
                "src": rel(folder / f"{k}.r{r}.png"),
                "think": step.get("think") or meta.get("think"),
                "decision": step.get("decision") or gate.get("decision"),
                "reward": step.get("reward", gate.get("reward")),
                "oracle": (gate.get("oracle") or {}).get("correct"),
                "note": gate.get("note"),
                "q": _questions(details) if isinstance(details, dict) else [],
            }
        )
    return rounds


def _image(
    bench: str, run: LoadedRun, sample_id: str, k: int, rec: dict[str, Any] | None, rel: _Paths
) -> dict[str, Any]:
    folder = run.root / "samples" / safe_name(sample_id)
    meta = _read_json(folder / f"{k}.json")
    entry: dict[str, Any] = {"k": k, "src": rel(folder / f"{k}.png"), "seed": meta.get("seed")}
    if meta.get("think"):
        entry["think"] = meta["think"]
    if isinstance(meta.get("srr"), dict):
        entry["srr"] = _srr_rounds(folder, k, meta["srr"], rel)
    if rec is None:
        entry.update(v="na", s=None, how="no record (not scored yet)")
        return entry
    verdict, score, how = _score(bench, rec)
    entry.update(v=verdict, s=score, how=how)
    for key, value in (
        ("why", rec.get("reason")),
        ("q", _questions(rec)),
        ("boxes", _boxes(rec)),
        ("replies", _replies(rec)),
        ("extra", _extra(rec)),
    ):
        if value:
            entry[key] = value
    return entry


# ------------------------------------------------------------------------------------------------ report
def _sample_flags(per_run: dict[int, list[dict[str, Any]]]) -> dict[str, bool]:
    images = [im for ims in per_run.values() for im in ims]
    verdicts = [im["v"] for im in images]
    statuses = set()
    means = []
    for ims in per_run.values():
        vs = {im["v"] for im in ims if im["v"] in ("pass", "fail")}
        statuses.add("pass" if vs == {"pass"} else "fail" if vs == {"fail"} else "mixed" if vs else "none")
        scores = [im["s"] for im in ims if im.get("s") is not None]
        if scores:
            means.append(sum(scores) / len(scores))
    spread = max(means) - min(means) if len(means) > 1 else 0.0
    return {
        "pass": bool(verdicts) and all(v == "pass" for v in verdicts),
        "fail": "fail" in verdicts,
        "err": "err" in verdicts,
        "disagree": len(per_run) > 1 and (len(statuses) > 1 or spread >= DISAGREE_SPREAD),
    }


def _column_category(bench: str, column: str, categories: set[str]) -> str | None:
    """The sample category a table column is about, when the column names one (else the whole run)."""
    mapped = _column_categories().get(bench, {}).get(column)
    if mapped in categories:
        return mapped
    norm = column.lower().removeprefix("o/").strip()
    for cat in sorted(categories):
        if cat.lower() == norm:
            return cat
    return None


def _column_query(column: str, categories: set[str]) -> str:
    """A search that narrows a column without a category of its own to its samples: TIIF's '... (short)'
    columns are about the categories that end in '(short)'."""
    if column.endswith(")") and "(" in column:
        suffix = column[column.rindex("(") :]
        if any(cat.endswith(suffix) for cat in categories):
            return suffix
    return ""


def build(run_dirs: Iterable[Path], out_dir: Path) -> Report:
    """The report's data: runs, summary table (each cell knows its samples' filter) and samples."""
    roots = find_runs(run_dirs)
    runs = [load_run(root) for root in roots]
    _unique_labels(runs)
    rel = _Paths(out_dir)
    report = Report()
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    categories: dict[str, set[str]] = {}
    for index, run in enumerate(runs):
        report.runs.append(
            {"label": run.label, "protocol": run.protocol, "benchmark": run.benchmark, "path": rel(run.root),
             "n": run.summary.get("n_scored"), "planned": run.summary.get("n_planned")}
        )  # fmt: skip
        by_sample: dict[str, dict[int, dict[str, Any]]] = {}
        for rec in run.records:
            by_sample.setdefault(str(rec["sample_id"]), {})[int(rec["k"])] = rec
        folder = run.root / "samples"
        # Folders are named safe_name(sample id); images without a record yet are shown under their folder.
        known = {safe_name(sid): sid for sid in by_sample}
        found = [known.get(p.name, p.name) for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        for sample_id in sorted({*by_sample, *found}):
            recs = by_sample.get(sample_id, {})
            sample_dir = folder / safe_name(sample_id)
            ks = sorted({*recs, *(int(p.stem) for p in sample_dir.glob("*.png") if p.stem.isdigit())})
            first = next(iter(recs.values()), {})
            key = (run.protocol, sample_id)
            sample = samples.setdefault(
                key,
                {"p": run.protocol, "id": sample_id, "prompt": "", "cat": run.benchmark, "runs": {}},
            )
            prompt = (
                first.get("prompt") or _read_json(sample_dir / f"{ks[0]}.json").get("prompt") if ks else ""
            )
            sample["prompt"] = sample["prompt"] or prompt or ""
            if first:
                sample["cat"] = _category(run.benchmark, first)
            categories.setdefault(run.protocol, set()).add(sample["cat"])
            sample["runs"][str(index)] = [
                _image(run.benchmark, run, sample_id, k, recs.get(k), rel) for k in ks
            ]
    for sample in samples.values():
        sample["flags"] = _sample_flags({int(i): ims for i, ims in sample["runs"].items()})
        report.samples.append(sample)
    report.tables = _table(runs, categories)
    return report


def _table(runs: list[LoadedRun], categories: dict[str, set[str]]) -> list[dict[str, Any]]:
    """One summary table per protocol (rows = its runs); each column knows the category it is about."""
    tables = []
    for protocol in dict.fromkeys(run.protocol for run in runs):
        members = [(i, run) for i, run in enumerate(runs) if run.protocol == protocol]
        columns = list(dict.fromkeys(col for _, run in members for col in run.summary.get("table", {})))
        if not columns:
            continue
        bench = members[0][1].benchmark
        rows = [
            {"run": i, "cells": [run.summary["table"].get(c) for c in columns],
             "present": [c in run.summary.get("table", {}) for c in columns]}
            for i, run in members
        ]  # fmt: skip
        cats = [_column_category(bench, c, categories.get(protocol, set())) for c in columns]
        queries = [
            _column_query(c, categories.get(protocol, set())) if not cat else ""
            for c, cat in zip(columns, cats, strict=True)
        ]
        tables.append(
            {"protocol": protocol, "columns": columns, "rows": rows, "cats": cats, "queries": queries}
        )
    return tables


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: every '<' is escaped, so no text can close the element or open a comment."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def render_html(report: Report, title: str = "evalkit sample viewer") -> str:
    template = (ASSETS / "index.html").read_text(encoding="utf-8")
    return (
        template.replace("{{TITLE}}", html.escape(title))
        .replace("{{CSS}}", (ASSETS / "viewer.css").read_text(encoding="utf-8"))
        .replace("{{JS}}", (ASSETS / "viewer.js").read_text(encoding="utf-8"))
        .replace("{{DATA}}", _script_json(report.to_json()))
    )


def build_report(run_dirs: Iterable[Path], out_dir: Path, title: str = "evalkit sample viewer") -> Path:
    """Write out_dir/index.html for the runs (folders, or folders holding runs) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build(run_dirs, out_dir)
    target = out_dir / "index.html"
    target.write_text(render_html(report, title), encoding="utf-8")
    return target

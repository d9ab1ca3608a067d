"""What a table needs to know about a run folder: its label, its scorer and what makes its numbers partial.

Everything is read from run.json and summary.json (and the judge cache for the snapshots a server actually
answered with), so a table never loads a model or the benchmark data.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.runs import read_json_file


@dataclass
class RunFolder:
    """One scored run folder as a table sees it."""

    path: Path
    info: dict[str, Any]
    summary: dict[str, Any]
    label: str = ""

    @property
    def protocol(self) -> str:
        return str(self.summary.get("protocol") or self.info["protocol"])

    @property
    def benchmark(self) -> str:
        return str(self.summary.get("benchmark") or self.info.get("benchmark") or self.protocol.split("@")[0])

    @property
    def model(self) -> str:
        return str(self.info.get("model") or self.info.get("generation", {}).get("model") or self.path.name)

    @property
    def generation(self) -> dict[str, Any]:
        return dict(self.info.get("generation") or {})


@dataclass
class Skipped:
    """A folder left out of a table (a failed or unscored run) and why."""

    path: Path
    reason: str


@dataclass
class Loaded:
    runs: list[RunFolder] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def load_run(path: Path) -> RunFolder:
    """A run folder with run.json and summary.json; EvalkitError saying what is missing otherwise."""
    path = Path(path)
    if not path.exists():
        raise EvalkitError(f"{path}: no such run folder")
    if not path.is_dir():
        raise EvalkitError(f"{path} is not a run folder (no run.json)")
    parts = {}
    for name in ("run.json", "summary.json"):
        file = path / name
        if not file.exists():
            what = "not an evalkit run" if name == "run.json" else "never scored, or its run failed"
            raise EvalkitError(f"{path}: no {name} ({what})")
        fix = "run `evalkit score` on the run to rewrite it" if name == "summary.json" else None
        parts[name] = read_json_file(file, name, fix=fix)
    if "table" not in parts["summary.json"]:
        raise EvalkitError(f"{path}/summary.json has no table; re-run `evalkit score {path}`")
    return RunFolder(path, parts["run.json"], parts["summary.json"])


def load_runs(paths: list[Path]) -> Loaded:
    """Every usable run; folders without run.json/summary.json (a failed run) are skipped with a reason.

    A path that does not exist is an error (a typo), and so is a list in which nothing is usable.
    """
    if not paths:
        raise EvalkitError("no run folders given")
    out = Loaded()
    for path in paths:
        if not Path(path).exists():
            raise EvalkitError(f"{path}: no such run folder")
        try:
            out.runs.append(load_run(path))
        except EvalkitError as e:
            out.skipped.append(Skipped(Path(path), str(e).removeprefix(f"{path}: ")))
    if not out.runs:
        first = out.skipped[0]
        raise EvalkitError(
            f"{first.path}: {first.reason}"
            if len(out.skipped) == 1
            else f"none of the {len(out.skipped)} folders is a scored run ({first.path}: {first.reason})"
        )
    return out


# -- labels -------------------------------------------------------------------------------------------
def base_label(run: RunFolder) -> str:
    """Model, variant and SRR setting: what a reader must always see to know what the row is."""
    gen = run.generation
    label = run.model
    variant = (gen.get("options") or {}).get("variant")
    if variant:
        label += f" ({variant})"
    srr = gen.get("srr")
    if srr:
        label += f" +SRR(K={srr.get('rounds')}, {srr.get('gate')})"
    return label


def label_attributes(run: RunFolder) -> dict[str, Any]:
    """The settings that may tell two runs of one model apart (shown only where they differ).

    Benchmark options (a TIIF split, WISE's think) are keyed by protocol: they tell apart runs of one
    protocol, never a model's runs on different benchmarks.
    """
    gen = run.generation
    attrs: dict[str, Any] = {"seed": gen.get("seed"), "dtype": gen.get("dtype")}
    for key, value in sorted((gen.get("options") or {}).items()):
        if key != "variant":
            attrs[key] = value
    for key, value in sorted((gen.get("bench_options") or run.info.get("bench_options") or {}).items()):
        attrs[f"{run.protocol}:{key}"] = value
    srr = gen.get("srr") or {}
    for key, value in sorted(srr.items()):
        if key not in ("rounds", "gate"):
            attrs[f"srr_{key}"] = value
    return attrs


def auto_labels(runs: list[RunFolder]) -> list[str]:
    """Base label plus, among runs with the same base label, the settings whose values differ."""
    by_base: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        by_base.setdefault(base_label(run), []).append(i)
    labels = [""] * len(runs)
    for base, members in by_base.items():
        attrs = [label_attributes(runs[i]) for i in members]
        keys = sorted({k for a in attrs for k in a})
        varying = []
        for k in keys:
            scope = [
                a
                for a, i in zip(attrs, members, strict=True)
                if ":" not in k or k.startswith(f"{runs[i].protocol}:")
            ]
            if len({json.dumps(a.get(k), sort_keys=True, default=str) for a in scope}) > 1:
                varying.append(k)
        for i, a in zip(members, attrs, strict=True):
            own = [k for k in varying if ":" not in k or k.startswith(f"{runs[i].protocol}:")]
            extra = ", ".join(f"{k.split(':', 1)[-1]}={_short(a.get(k))}" for k in own)
            labels[i] = f"{base} [{extra}]" if extra else base
    return labels


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# -- scorer -------------------------------------------------------------------------------------------
def judge_of(run: RunFolder) -> str | None:
    """'model (backend, snapshot S; served T)' of the run's judge, or None for judge-free scorers."""
    scorer = run.info.get("scorer") or {}
    chosen = (run.info.get("scoring") or {}).get("judge") or {}
    judge = scorer.get("judge") if isinstance(scorer.get("judge"), dict) else {}
    if not judge and not chosen:
        return None
    model = judge.get("model") or chosen.get("spec") or "unknown judge"
    bits = [judge["backend"]] if judge.get("backend") else []
    if judge.get("snapshot"):
        bits.append(f"snapshot {judge['snapshot']}")
    served = sorted(set(judge.get("served_snapshots") or []) | served_snapshots(run.path))
    if served:
        bits.append("served " + ", ".join(served))
    return f"{model} ({'; '.join(bits)})" if bits else str(model)


def served_snapshots(run_dir: Path) -> set[str]:
    """Model snapshots a judge server answered with, as recorded in the run's reply cache."""
    found: set[str] = set()
    for path in sorted(Path(run_dir).glob("judge_cache*.sqlite")):  # one per node of a multi-node job
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT DISTINCT json_extract(value, '$.snapshot') FROM replies").fetchall()
        except sqlite3.Error:
            continue
        found |= {str(r[0]) for r in rows if r[0]}
    return found


def detector_of(run: RunFolder) -> str | None:
    """The detector (GenEval) as 'backend name (checkpoint file)', or None."""
    det = (run.info.get("scorer") or {}).get("detector")
    if not isinstance(det, dict):
        name = (run.info.get("scoring") or {}).get("detector")
        return str(name) if name else None
    ckpt = Path(str(det.get("checkpoint") or "")).name
    text = " ".join(str(det[k]) for k in ("backend", "name") if det.get(k))
    return f"{text} ({ckpt})" if ckpt else text


def scorer_identity(run: RunFolder) -> dict[str, str | None]:
    """What must be equal for two runs to share a column: the judge model and snapshot, the detector."""
    judge = (run.info.get("scorer") or {}).get("judge") or {}
    spec = ((run.info.get("scoring") or {}).get("judge") or {}).get("spec")
    name = judge.get("model") or spec
    return {
        "judge": f"{name}@{judge['snapshot']}" if name and judge.get("snapshot") else name,
        "detector": detector_of(run),
    }


def random_components(run: RunFolder) -> list[str]:
    """Parts of the run with random (tiny test) weights: its numbers check the pipeline, nothing more."""
    out = []
    if run.model.startswith("tiny"):
        out.append(f"{run.model} (generator)")
    scorer = run.info.get("scorer") or {}
    judge = scorer.get("judge") or {}
    spec = ((run.info.get("scoring") or {}).get("judge") or {}).get("spec")
    if spec == "tiny" or str(judge.get("model") or "").startswith("tiny"):
        out.append(f"{judge.get('model') or spec} (judge)")
    det = scorer.get("detector") or {}
    if isinstance(det, dict) and det.get("name") == "tiny":
        out.append("tiny detector")
    color = scorer.get("color") or {}
    if isinstance(color, dict) and "tiny" in Path(str(color.get("clip") or "")).name:
        out.append("tiny CLIP colour classifier")
    return out


# -- counts -------------------------------------------------------------------------------------------
def protocol_images(run: RunFolder) -> int | None:
    """How many images the whole protocol has (N of 'n of N'): from the summary when recorded, else by
    counting the samples in the run's data folder (or the default one); None when neither is there."""
    s = run.summary
    if s.get("n_protocol_images") is not None:
        return int(s["n_protocol_images"])
    per = int(run.generation.get("images_per_sample") or 1)
    if s.get("n_missing") is not None:  # WISE counts the prompts it lacks
        return (int(s.get("n_scored") or 0) + int(s["n_missing"])) * per
    from evalkit import paths

    data = paths.data_dir(run.info.get("data_dir"))
    key = (run.protocol, json.dumps(run.info.get("bench_options") or {}, sort_keys=True), str(data))
    if key not in _SIZES:
        _SIZES[key] = _count_samples(run, data)
    n = _SIZES[key]
    return None if n is None else n * per


_SIZES: dict[tuple[str, str, Any], int | None] = {}


def _count_samples(run: RunFolder, data: Path) -> int | None:
    from evalkit import registry

    try:
        cls = registry.lookup("benchmarks", run.benchmark).load()
        bench = cls(
            data,
            protocol=run.protocol,
            **(run.info.get("bench_options") or {}),
        )
        return len(bench.samples())
    except Exception:  # noqa: BLE001 - no data here: the note says "n scored" without N
        return None


def partial_note(run: RunFolder) -> str | None:
    """'n of N images scored' where the run is partial (--limit, unscored images, missing prompts)."""
    s = run.summary
    scored, planned = int(s.get("n_scored", 0) or 0), int(s.get("n_planned", 0) or 0)
    recorded = int(s.get("n_records", scored + int(s.get("n_failed") or 0)) or 0)
    limit = run.info.get("limit")
    total = protocol_images(run) if limit is not None or recorded < planned else None
    bits = []
    if limit is not None and not (total and planned >= total):  # a limit past the last prompt cuts nothing
        bits.append(f"--limit {limit}: first {limit} prompts")
    if recorded < planned:
        bits.append(f"{planned - recorded} images not judged")
    if not bits:
        return None
    of = f" of {total}" if total else (f" of {planned} planned" if planned else "")
    return f"{scored}{of} images scored ({'; '.join(bits)})"


def failure_note(run: RunFolder) -> str | None:
    """Judge failures (never scored), images left out with them, abstentions, and the top reason."""
    s = run.summary
    failed, abstained = int(s.get("n_failed") or 0), int(s.get("n_abstained") or s.get("n_abstentions") or 0)
    if not failed and not abstained:
        return None
    scored, planned = int(s.get("n_scored", 0) or 0), int(s.get("n_planned", 0) or 0)
    left_out = int(s.get("n_left_out") or 0)
    also = f"{left_out} other images of their prompts left out; " if left_out else ""
    parts = []
    if failed:
        parts.append(f"{failed} judge failures")
    if abstained:
        parts.append(f"{abstained} abstentions")
    text = f"{' and '.join(parts)} (not scored; {also}{scored}/{planned} images scored)"
    reasons = s.get("failure_reasons") or {}
    top = next(iter(reasons), None) if isinstance(reasons, dict) else None
    return text + (f", most often: {top}" if top else "")


def srr_note(run: RunFolder) -> str | None:
    """What the SRR gate did (summary "srr" counts): refined n of N images, kept, abstained."""
    counts = run.summary.get("srr")
    if not isinstance(counts, dict) or not counts.get("images"):
        return None
    bits = [f"{counts.get('refined', 0)} of {counts['images']} images refined"]
    if counts.get("kept"):
        bits.append(f"{counts['kept']} kept by the gate")
    if counts.get("abstained"):
        bits.append(f"{counts['abstained']} gate decisions without a signal (abstentions)")
    gate = counts.get("gate") or (run.generation.get("srr") or {}).get("gate")
    return f"{', '.join(bits)}" + (f" ({gate} gate)" if gate else "")


def incomplete_note(run: RunFolder) -> str | None:
    """A headline that averages only what is present (GenEval's overall over the tasks a partial run has)."""
    if run.summary.get("complete") is False:
        return "not every task present: its overall averages the tasks it has"
    return None


def missing_reason(run: RunFolder) -> str:
    """Why a column of this run has no number (shown in the cell, so kept short)."""
    s = run.summary
    scored, failed = int(s.get("n_scored", 0) or 0), int(s.get("n_failed") or 0)
    if scored == 0 and failed:
        return f"failed ({failed} judge failures)"
    if scored == 0:
        return "not scored"
    return "n/a (partial run)"

"""Paper-style tables from run folders: one row per run configuration, each benchmark's official columns.

Rows: one per label (model + what tells the run apart: variant, SRR, seed, options; or `labels`); runs of
different protocols with one label share a row, two runs landing in the same cells are an error. Columns
are grouped by protocol, and a protocol's columns never mix judges or detectors. Footnotes appear once per
table: protocols, judges (id and snapshot), detectors, random-weight parts, partial runs (n of N),
failures and abstentions, skipped folders, and how intervals and p-values were computed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report import provenance as prov
from evalkit.report import stats

Key = tuple[str, str]  # (protocol, column)


@dataclass
class Cell:
    """One number of the table with everything printed next to it."""

    value: float | None = None
    why: str = ""  # shown instead of a number
    ci: stats.Interval | None = None
    delta: float | None = None
    p_value: float | None = None
    n: int | None = None  # prompts behind the number (with intervals)


@dataclass
class Row:
    label: str
    cells: dict[Key, Cell] = field(default_factory=dict)
    runs: list[Path] = field(default_factory=list)
    baseline: bool = False


@dataclass
class Table:
    columns: list[Key]
    rows: list[Row]
    footnotes: list[str] = field(default_factory=list)
    decimals: int = 2
    ci: bool = False
    warnings: list[str] = field(default_factory=list)  # one line each, for stderr (skipped folders)

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)


def build_table(
    run_dirs: list[Path],
    baseline: Path | list[Path] | None = None,
    *,
    labels: list[str] | None = None,
    ci: bool = False,
    resamples: int = stats.RESAMPLES,
    seed: int = stats.SEED,
) -> Table:
    """The table of `run_dirs` (rows in argument order). `baseline`: run folder(s) to give deltas against
    (one per protocol; added as rows when not listed); `labels`: names for the runs, in order or as
    'RUN_DIR=NAME'; `ci`: bootstrap intervals and, with a baseline, paired p-values."""
    baselines = [Path(b) for b in ([baseline] if isinstance(baseline, (str, Path)) else baseline or [])]
    listed = {Path(p).resolve() for p in run_dirs}
    all_dirs = [b for b in baselines if b.resolve() not in listed] + [Path(p) for p in run_dirs]
    all_dirs = list({p.resolve(): p for p in reversed(all_dirs)}.values())[::-1]  # each folder once
    loaded = prov.load_runs(all_dirs)
    runs = loaded.runs
    for b in baselines:
        if b.resolve() not in {r.path.resolve() for r in runs}:
            raise EvalkitError(f"baseline {b} is not a scored run; pick a run folder with a summary.json")
    _assign_labels(runs, run_dirs, labels)
    columns, groups = _columns(runs)
    rows = _rows(runs, columns)
    table = Table(columns=columns, rows=rows, ci=ci)
    base_of = _baselines(runs, baselines)
    for row in rows:
        row.baseline = any(p.resolve() in {b.path.resolve() for b in base_of.values()} for p in row.runs)
    boots = _Bootstraps(resamples, seed) if ci else None
    for run in runs:
        row = table.row(run.label)
        base = base_of.get(run.protocol)
        if boots is not None and boots.has_records(run):
            for col, interval in boots.get(run).intervals().items():
                cell = row.cells.get((run.protocol, col))
                if cell is not None and cell.value is not None:
                    cell.ci, cell.n = interval, interval.n
        if base is None or base is run:
            continue
        both = boots is not None and boots.has_records(base) and boots.has_records(run)
        tests = boots.paired(base, run) if both else {}
        base_table = base.summary["table"]
        for col in run.summary["table"]:
            cell, b = row.cells[(run.protocol, col)], base_table.get(col)
            if cell.value is not None and b is not None:
                cell.delta = cell.value - b
                cell.p_value = tests[col].p_value if col in tests else None
    table.footnotes = _footnotes(runs, groups, loaded.skipped, base_of, ci, resamples, seed)
    if boots is not None:
        bare = [r.label for r in runs if not boots.has_records(r)]
        if bare:
            table.footnotes.append(f"no intervals (no per-image records.jsonl): {', '.join(bare)}")
    table.warnings = [f"skipped {s.path}: {s.reason}" for s in loaded.skipped]
    return table


def _assign_labels(runs: list[prov.RunFolder], given_dirs: list[Path], labels: list[str] | None) -> None:
    auto = prov.auto_labels(runs)
    for run, label in zip(runs, auto, strict=True):
        run.label = label
    if not labels:
        return
    by_path = {r.path.resolve(): r for r in runs}
    if all("=" in lab and Path(lab.split("=", 1)[0]).exists() for lab in labels):
        for lab in labels:
            path, name = lab.split("=", 1)
            run = by_path.get(Path(path).resolve())
            if run is None:
                raise EvalkitError(f"--label {lab}: {path} is not one of the reported runs")
            run.label = name
        return
    if len(labels) != len(given_dirs):
        raise EvalkitError(
            f"{len(labels)} labels for {len(given_dirs)} run folders; give one --label per run folder, "
            "in order, or name folders with --label RUN_DIR=NAME"
        )
    for path, name in zip(given_dirs, labels, strict=True):
        run = by_path.get(Path(path).resolve())
        if run is not None:  # a skipped folder's label is dropped with it
            run.label = name


def _columns(runs: list[prov.RunFolder]) -> tuple[list[Key], dict[str, list[prov.RunFolder]]]:
    """Columns grouped by protocol, in order of first appearance; refuses mixed judges or detectors."""
    groups: dict[str, list[prov.RunFolder]] = {}
    columns: list[Key] = []
    for run in runs:
        groups.setdefault(run.protocol, []).append(run)
        columns.extend((run.protocol, c) for c in run.summary["table"] if (run.protocol, c) not in columns)
    for protocol, members in groups.items():
        for what in ("judge", "detector"):
            seen = {prov.scorer_identity(r)[what] for r in members}
            if len(seen) > 1:
                names = ", ".join(sorted(str(s) for s in seen))
                raise EvalkitError(
                    f"cannot mix {what}s ({names}) in one {protocol} column; report them in separate tables"
                )
    return columns, groups


def _rows(runs: list[prov.RunFolder], columns: list[Key]) -> list[Row]:
    rows: dict[str, Row] = {}
    seen: dict[tuple[str, str], Path] = {}  # (label, protocol) -> run folder
    for run in runs:
        row = rows.setdefault(run.label, Row(run.label))
        other = seen.setdefault((run.label, run.protocol), run.path)
        if other != run.path:
            raise EvalkitError(
                f"two {run.protocol} runs have the label '{run.label}' ({other} and {run.path}); "
                "name them apart with --label"
            )
        row.runs.append(run.path)
        table = run.summary["table"]
        for protocol, col in columns:
            if protocol != run.protocol:
                continue
            value = table.get(col)
            row.cells[(protocol, col)] = Cell(value, "" if value is not None else prov.missing_reason(run))
    return list(rows.values())


def _baselines(runs: list[prov.RunFolder], baselines: list[Path]) -> dict[str, prov.RunFolder]:
    out: dict[str, prov.RunFolder] = {}
    for b in baselines:
        run = next(r for r in runs if r.path.resolve() == b.resolve())
        if run.protocol in out:
            raise EvalkitError(f"two baselines for {run.protocol}; give one --baseline per protocol")
        out[run.protocol] = run
    return out


class _Bootstraps:
    """Bootstrap replicates per (run, prompts), computed once and shared by intervals and paired tests."""

    def __init__(self, resamples: int, seed: int):
        self.resamples, self.seed = resamples, seed
        self.cache: dict[tuple[Path, tuple[str, ...] | None], stats.Bootstrap] = {}
        self.records: dict[Path, list[dict]] = {}

    def _records(self, run: prov.RunFolder) -> list[dict]:
        if run.path not in self.records:
            self.records[run.path] = stats.run_records(run.path)
        return self.records[run.path]

    def has_records(self, run: prov.RunFolder) -> bool:
        """Intervals need the per-image records; a summary alone (a copied table) gets none, footnoted."""
        return bool(self._records(run))

    def get(self, run: prov.RunFolder, keys: list[str] | None = None) -> stats.Bootstrap:
        records = self._records(run)
        if keys is not None and keys == sorted({str(r["sample_id"]) for r in records}):
            keys = None  # the run's own prompts: reuse its interval's replicates
        key = (run.path, tuple(keys) if keys is not None else None)
        if key not in self.cache:
            self.cache[key] = stats.resample(
                records,
                stats.official_aggregate(run.info),
                keys=keys,
                resamples=self.resamples,
                seed=self.seed,
            )
        return self.cache[key]

    def paired(self, base: prov.RunFolder, run: prov.RunFolder) -> dict[str, stats.PairedTest]:
        keys = stats.shared_prompts(self._records(base), self._records(run))
        if not keys:
            raise EvalkitError(f"{run.path} and the baseline {base.path} share no prompts; no paired test")
        return stats.compare(self.get(base, keys), self.get(run, keys))


def _footnotes(
    runs: list[prov.RunFolder],
    groups: dict[str, list[prov.RunFolder]],
    skipped: list[prov.Skipped],
    base_of: dict[str, prov.RunFolder],
    ci: bool,
    resamples: int,
    seed: int,
) -> list[str]:
    notes = [f"protocol: {', '.join(groups)}"]
    for what, describe in (("judge", prov.judge_of), ("detector", prov.detector_of)):
        by_text: dict[str, list[str]] = {}  # one note per distinct scorer, naming its protocols
        for protocol, members in groups.items():
            text = next((t for t in map(describe, members) if t), None)
            if text:
                by_text.setdefault(text, []).append(protocol)
        notes += [f"{what} ({', '.join(protocols)}): {text}" for text, protocols in by_text.items()]
    random_parts = list(dict.fromkeys(p for r in runs for p in prov.random_components(r)))
    if random_parts:
        notes.append(f"random weights, numbers are pipeline checks, not results: {', '.join(random_parts)}")
    for title, fn in (
        ("partial runs", prov.partial_note),
        ("incomplete", prov.incomplete_note),
        ("failures", prov.failure_note),
        ("SRR", prov.srr_note),
    ):
        by_note: dict[tuple[str, str], list[str]] = {}  # rows with the same note on a protocol share it
        for r in runs:
            if text := fn(r):
                by_note.setdefault((r.protocol, text), []).append(r.label)
        if by_note:
            items = [f"{', '.join(labels)} on {p}: {text}" for (p, text), labels in by_note.items()]
            notes.append(f"{title}: " + "; ".join(items))
    oracle = [r.label for r in runs if (r.generation.get("srr") or {}).get("gate") == "oracle"]
    if oracle:
        notes.append(f"refinement gated by the benchmark's own answer (oracle): {', '.join(oracle)}")
    if skipped:
        notes.append("skipped: " + "; ".join(f"{s.path.name} ({s.reason})" for s in skipped))
    if ci:
        notes.append(stats.describe(resamples, seed=seed) + "; n per cell in the CSV")
    if base_of:
        which = ", ".join(f"{r.label} ({p})" for p, r in base_of.items())
        marks = "; * p < 0.05, ** p < 0.01 (paired bootstrap over the shared prompts)" if ci else ""
        notes.append(f"deltas against {which}{marks}")
    return notes


# -- rendering ---------------------------------------------------------------------------------------
def best_labels(table: Table, key: Key, higher_is_better: bool = True) -> set[str]:
    """Rows to bold in a column: the best shown value, only where it beats at least one other row
    (all rows tied, e.g. all zero, is a trivial tie and bolds nothing)."""
    return set(
        best_keys(
            {r.label: r.cells.get(key, Cell()).value for r in table.rows}, table.decimals, higher_is_better
        )
    )


def best_keys(values: dict[str, float | None], decimals: int, higher_is_better: bool = True) -> list[str]:
    """Keys whose value, rounded as printed, is the best, when at least one other value is worse."""
    shown = {k: round(v, decimals) for k, v in values.items() if v is not None}
    if len(shown) < 2:
        return []
    best = max(shown.values()) if higher_is_better else min(shown.values())
    if all(v == best for v in shown.values()):
        return []
    return [k for k, v in shown.items() if v == best]


def _header(table: Table) -> list[str]:
    multi = len({p for p, _ in table.columns}) > 1
    return ["Model"] + [f"{p}: {c}" if multi else c for p, c in table.columns]


def _number(table: Table, cell: Cell, fmt: str, bold: bool) -> str:
    if cell.value is None:
        why = cell.why or "-"
        return latex_escape(why) if fmt == "latex" else why
    d = table.decimals
    text = f"{cell.value:.{d}f}"
    if bold:
        text = f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"
    if table.ci and cell.ci is not None and cell.ci.half_width is not None:
        hw = f"{cell.ci.half_width:.{d}f}"
        text += f" ± {hw}" if fmt == "md" else rf"{{\scriptsize $\pm${hw}}}"
    if cell.delta is not None:
        mark = stats.significance_marker(cell.p_value)
        if fmt == "latex" and mark:
            mark = f"$^{{{mark}}}$"
        text += f" ({cell.delta:+.{d}f}{mark})"
    return text


def render(table: Table, fmt: str) -> str:
    if fmt == "md":
        return _markdown(table)
    if fmt == "latex":
        return _latex(table)
    if fmt == "csv":
        return _csv(table)
    raise EvalkitError(f"unknown format '{fmt}' (use md, latex or csv)")


def _cells(table: Table, fmt: str) -> list[list[str]]:
    bold = {key: best_labels(table, key) for key in table.columns}
    out = []
    for row in table.rows:
        cells = []
        for key in table.columns:
            cell = row.cells.get(key)
            cells.append("" if cell is None else _number(table, cell, fmt, row.label in bold[key]))
        out.append(cells)
    return out


def _markdown(table: Table) -> str:
    header = _header(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row, cells in zip(table.rows, _cells(table, "md"), strict=True):
        label = row.label.replace("|", "\\|") + (" (baseline)" if row.baseline else "")
        lines.append("| " + " | ".join([label] + [c.replace("|", "\\|") for c in cells]) + " |")
    lines.append("")
    lines.extend(f"{i}. {note}" for i, note in enumerate(table.footnotes, start=1))
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "<": r"$<$",
    ">": r"$>$",
}


def latex_escape(text: str) -> str:
    """Text safe in a LaTeX table cell or note (model names like sd35m_grpo, '50%', 'A&B', '#3', '--limit')."""
    out = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))
    while "--" in out:  # no en/em-dash ligatures: `--limit` stays two hyphens
        out = out.replace("--", "-{}-")
    return out


def latex_packages(table: Table) -> list[str]:
    """The packages a table's LaTeX needs (declared in its first line): booktabs for the rules, graphicx
    to shrink a table wider than the text (never to enlarge one)."""
    return ["booktabs", "graphicx"]


def _latex_header(table: Table) -> list[str]:
    """One header row, or with several protocols a protocol row over its columns (booktabs cmidrules)."""
    groups: list[tuple[str, int]] = []
    for protocol, _ in table.columns:
        if groups and groups[-1][0] == protocol:
            groups[-1] = (protocol, groups[-1][1] + 1)
        else:
            groups.append((protocol, 1))
    names = " & ".join(["Model", *(latex_escape(c) for _, c in table.columns)]) + r" \\"
    if len(groups) < 2:
        return [names]
    top, rules, first = [""], [], 2
    for protocol, n in groups:
        top.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(protocol)}}}")
        rules.append(rf"\cmidrule(lr){{{first}-{first + n - 1}}}")
        first += n
    return [" & ".join(top) + r" \\", "".join(rules), names]


def _latex(table: Table) -> str:
    lines = [
        f"% needs \\usepackage{{{','.join(latex_packages(table))}}}; nothing else",
        r"\begin{table}[t]",
        r"\centering",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        *_latex_header(table),
        r"\midrule",
    ]
    for row, cells in zip(table.rows, _cells(table, "latex"), strict=True):
        label = latex_escape(row.label) + (" (baseline)" if row.baseline else "")
        lines.append(" & ".join([label, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.footnotes:
        lines.append(r"\par\smallskip{\raggedright\footnotesize")
        lines += [f"{i}. {latex_escape(n)}\\par" for i, n in enumerate(table.footnotes, start=1)]
        lines.append("}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _csv(table: Table) -> str:
    """Plain numbers; with intervals each column gets its low/high/n, with a baseline its delta/p."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["Model"]
    with_delta = any(c.delta is not None for r in table.rows for c in r.cells.values())
    for name in _header(table)[1:]:
        header.append(name)
        if table.ci:
            header += [f"{name} ci_low", f"{name} ci_high", f"{name} n"]
        if with_delta:
            header += [f"{name} delta"] + ([f"{name} p"] if table.ci else [])
    writer.writerow(header)
    for row in table.rows:
        out: list[object] = [row.label]
        for key in table.columns:
            cell = row.cells.get(key, Cell())
            out.append("" if cell.value is None else cell.value)
            if table.ci:
                ci = cell.ci
                out += [
                    "" if ci is None else ci.low,
                    "" if ci is None else ci.high,
                    "" if cell.n is None else cell.n,
                ]
            if with_delta:
                out.append("" if cell.delta is None else cell.delta)
                if table.ci:
                    out.append("" if cell.p_value is None else cell.p_value)
        writer.writerow(["" if v is None else v for v in out])
    return buf.getvalue()

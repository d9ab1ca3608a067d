"""Paper-style tables from run folders: rows = runs, columns = each benchmark's official columns.

A column never mixes protocols: two runs of one benchmark under different protocol ids are refused.
Every table carries footnotes with the protocol ids, scorer settings and anything partial.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError


@dataclass
class Table:
    columns: list[tuple[str, str]]  # (benchmark, column)
    rows: list[tuple[str, dict[tuple[str, str], float | None]]]
    deltas: dict[str, dict[tuple[str, str], float | None]] = field(default_factory=dict)
    footnotes: list[str] = field(default_factory=list)
    decimals: int = 2


def _load(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from evalkit.runs import read_json_file

    run_dir = Path(run_dir)
    for name in ("run.json", "summary.json"):
        if not (run_dir / name).exists():
            raise EvalkitError(f"{run_dir}: no {name}; score the run first")
    info = read_json_file(run_dir / "run.json", "run.json")
    summary = read_json_file(
        run_dir / "summary.json", "summary.json", fix="run `evalkit score` on the run to rewrite it"
    )
    return info, summary


def _label(info: dict[str, Any]) -> str:
    label = info["model"]
    srr = info.get("generation", {}).get("srr")
    if srr:
        label += f" +SRR(K={srr['rounds']}, {srr['gate']})"
    return label


def _count_notes(where: str, summary: dict[str, Any]) -> list[str]:
    """Partial (images without a record) and failed (judging failed, not scored) footnotes.

    n_scored counts the records the scores are made of, n_failed the failed ones and n_left_out those
    left out with a failed image of their sample; n_records (when present) is every record, so
    n_planned - n_records images were never judged. Summaries written before n_failed was split off
    counted failures in n_scored; n_records keeps them right too.
    """
    scored, failed = summary.get("n_scored", 0), summary.get("n_failed") or 0
    planned = summary.get("n_planned", 0)
    recorded = summary.get("n_records", scored + failed)
    notes = []
    if recorded < planned:
        notes.append(f"{where}: partial, {scored}/{planned} images scored ({planned - recorded} not judged)")
    if failed:
        left_out = summary.get("n_left_out") or 0
        also = f"{left_out} other images of their prompts left out; " if left_out else ""
        notes.append(f"{where}: {failed} judge failures (not scored; {also}{scored}/{planned} images scored)")
    return notes


def build_table(run_dirs: list[Path], baseline: Path | None = None) -> Table:
    if not run_dirs:
        raise EvalkitError("no run folders given")
    protocols: dict[str, str] = {}  # benchmark -> protocol
    columns: list[tuple[str, str]] = []
    rows: dict[str, dict[tuple[str, str], float | None]] = {}
    notes: list[str] = []
    for run_dir in run_dirs:
        info, summary = _load(run_dir)
        bench, protocol = summary["benchmark"], summary["protocol"]
        if protocols.setdefault(bench, protocol) != protocol:
            raise EvalkitError(
                f"cannot mix protocols {protocols[bench]} and {protocol} in one {bench} column; report them separately"
            )
        for col in summary["table"]:
            if (bench, col) not in columns:
                columns.append((bench, col))
        row = rows.setdefault(_label(info), {})
        row.update({(bench, col): v for col, v in summary["table"].items()})
        notes.extend(_count_notes(f"{_label(info)} on {protocol}", summary))
        if info["model"].startswith("tiny"):
            notes.append(f"{info['model']} has random weights: its numbers are pipeline checks, not results")
        gate = info.get("generation", {}).get("srr", {}).get("gate")
        if gate == "oracle":
            notes.append(f"{_label(info)}: refinement gated by the benchmark's own answer (oracle)")
    table = Table(columns=columns, rows=list(rows.items()))
    table.footnotes = [f"protocol: {', '.join(sorted(set(protocols.values())))}", *dict.fromkeys(notes)]
    if baseline is not None:
        base_info, base_summary = _load(baseline)
        base = {(base_summary["benchmark"], c): v for c, v in base_summary["table"].items()}
        if protocols.get(base_summary["benchmark"], base_summary["protocol"]) != base_summary["protocol"]:
            raise EvalkitError("the baseline run uses another protocol than the table")
        for label, values in table.rows:
            table.deltas[label] = {
                key: (v - base[key]) if v is not None and base.get(key) is not None else None
                for key, v in values.items()
            }
        table.footnotes.append(f"deltas against {_label(base_info)}")
    return table


def _cell(table: Table, label: str, key: tuple[str, str]) -> str:
    value = dict(table.rows)[label].get(key)
    if value is None:
        return "-"
    text = f"{value:.{table.decimals}f}"
    delta = table.deltas.get(label, {}).get(key)
    if delta is not None:
        text += f" ({delta:+.{table.decimals}f})"
    return text


def _header(table: Table) -> list[str]:
    multi = len({b for b, _ in table.columns}) > 1
    return ["Model"] + [f"{b}: {c}" if multi else c for b, c in table.columns]


def render(table: Table, fmt: str) -> str:
    if fmt == "md":
        return _markdown(table)
    if fmt == "latex":
        return _latex(table)
    if fmt == "csv":
        return _csv(table)
    raise EvalkitError(f"unknown format '{fmt}' (use md, latex or csv)")


def _markdown(table: Table) -> str:
    header = _header(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label, _ in table.rows:
        lines.append("| " + " | ".join([label] + [_cell(table, label, key) for key in table.columns]) + " |")
    lines.append("")
    lines.extend(f"{i}. {note}" for i, note in enumerate(table.footnotes, start=1))
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
    ):
        text = text.replace(a, b)
    return text


def _latex(table: Table) -> str:
    header = _header(table)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for label, _ in table.rows:
        cells = [_latex_escape(label)] + [_cell(table, label, key) for key in table.columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        lines.append(r"\caption*{\footnotesize " + "; ".join(_latex_escape(n) for n in table.footnotes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(_header(table))
    for label, values in table.rows:
        writer.writerow([label] + ["" if values.get(k) is None else values[k] for k in table.columns])
    return buf.getvalue()

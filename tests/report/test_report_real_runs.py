"""Tables over every benchmark's tiny real run (the viewer's session fixture): intervals around the
official numbers, one row per seed, and the whole multi-benchmark table compiling in LaTeX."""

from __future__ import annotations

import json

import pytest
from test_latex_compile import ENGINE, TOOLS, compile_table

from evalkit.report.stats import official_aggregate, run_records
from evalkit.report.tables import build_table, render


def _scored(tiny_runs):
    return {k: p for k, p in tiny_runs.items() if (p / "summary.json").exists() and (p / "run.json").exists()}


def test_official_aggregate_reproduces_every_runs_summary(tiny_runs):
    """The bootstrap recomputes each benchmark's own aggregation: on the run's records it must give the
    summary's numbers exactly, and every interval must hold its estimate."""
    for key, run in _scored(tiny_runs).items():
        info = json.loads((run / "run.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        assert dict(official_aggregate(info)(run_records(run))) == summary["table"], key
        table = build_table([run], ci=True, resamples=30)
        for (_, col), cell in table.rows[0].cells.items():
            assert cell.value == summary["table"][col], (key, col)
            if cell.value is not None and cell.ci is not None and cell.ci.low is not None:
                assert cell.ci.low - 1e-9 <= cell.value <= cell.ci.high + 1e-9, (key, col)


def test_all_benchmarks_in_one_table(tiny_runs, tmp_path):
    runs = list(_scored(tiny_runs).values())
    table = build_table(runs, ci=True, resamples=20)
    protocols = {json.loads((p / "summary.json").read_text())["protocol"] for p in runs}
    assert {p for p, _ in table.columns} == protocols
    labels = [r.label for r in table.rows]
    assert len(labels) == len(set(labels)) and any("seed=7" in label for label in labels)
    md = render(table, "md")
    assert md.count("random weights") == 1
    if not (ENGINE and TOOLS):
        pytest.skip(
            "no pdflatex/pdfinfo (apt-get install texlive-latex-base texlive-latex-recommended poppler-utils)"
        )
    compile_table(render(table, "latex"), tmp_path / "all")

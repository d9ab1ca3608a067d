"""Paper tables from run folders: formats, deltas, footnotes, and refusing to mix protocols."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.report.tables import build_table, render


def _fake_run(
    root: Path, model: str, protocol: str, values: dict[str, float], scored: int = 8, planned: int = 8
) -> Path:
    run = root / protocol / model
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"model": model, "protocol": protocol, "generation": {}}))
    summary = {
        "benchmark": protocol.split("@")[0],
        "protocol": protocol,
        "table": values,
        "n_scored": scored,
        "n_planned": planned,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_markdown_latex_csv_and_baseline_deltas(tmp_path):
    a = _fake_run(tmp_path, "sd35m", "geneval", {"Single Obj.": 0.98, "Overall": 0.62})
    b = _fake_run(tmp_path, "sd35m-grpo", "geneval", {"Single Obj.": 0.99, "Overall": 0.70})
    table = build_table([a, b], baseline=a)
    md = render(table, "md")
    assert md.splitlines()[0] == "| Model | Single Obj. | Overall |"
    assert "| sd35m-grpo | 0.99 (+0.01) | 0.70 (+0.08) |" in md
    assert "protocol: geneval" in md
    latex = render(table, "latex")
    assert r"\toprule" in latex and r"sd35m-grpo & 0.99 (+0.01) & 0.70 (+0.08) \\" in latex
    csv_text = render(table, "csv")
    assert csv_text.splitlines()[2].startswith("sd35m-grpo,0.99,0.7")


def test_mixing_protocols_in_one_column_is_refused(tmp_path):
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5})
    b = _fake_run(tmp_path, "m", "geneval@long", {"Overall": 0.6})
    with pytest.raises(EvalkitError, match="cannot mix protocols"):
        build_table([a, b])


def test_partial_runs_are_footnoted(tmp_path):
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5}, scored=4, planned=2212)
    assert "partial, 4/2212 images scored" in render(build_table([a]), "md")


def test_report_cli_writes_file_and_rejects_unknown_format(cli, tmp_path):
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5})
    code, _, err = cli("report", a, "--format", "latex", "--output", tmp_path / "t.tex")
    assert code == 0, err
    assert r"\begin{tabular}" in (tmp_path / "t.tex").read_text()
    code, _, err = cli("report", a, "--format", "html")
    assert code == 2 and "unknown format 'html'" in err
    code, _, err = cli("report", tmp_path / "nope")
    assert code == 2 and "no run.json" in err

"""Paper tables from run folders: one row per run, labels, footnotes once, judges and protocols never mixed,
bold only for real ties, failed cells with a reason, baseline deltas, intervals and p-values."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import EvalkitError
from evalkit.report.tables import best_keys, build_table, latex_escape, render

TAGS = ("single_object", "two_object", "counting")


def _geneval_records(seed: int, p: float, prompts: int = 12) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(prompts):
        tag = TAGS[i % len(TAGS)]
        for k in range(4):
            out.append(
                {
                    "id": f"{i:05d}/{k}",
                    "sample_id": f"{i:05d}",
                    "k": k,
                    "tag": tag,
                    "metadata": {"tag": tag, "prompt": f"p{i}"},
                    "correct": rng.random() < p,
                }
            )
    return out


def _fake_run(
    root: Path,
    name: str,
    protocol: str,
    values: dict[str, float | None] | None = None,
    *,
    model: str | None = None,
    seed: int = 42,
    options: dict[str, Any] | None = None,
    scored: int = 8,
    planned: int = 8,
    limit: int | None = None,
    judge: str | None = None,
    summary_extra: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
    images_per_sample: int = 4,
) -> Path:
    """A run folder as the pipeline writes it; with `records`, the table is their official aggregate."""
    run = root / protocol / name
    run.mkdir(parents=True)
    info: dict[str, Any] = {
        "benchmark": protocol.split("@")[0],
        "protocol": protocol,
        "model": model or name,
        "generation": {
            "model": model or name,
            "seed": seed,
            "options": options or {},
            "images_per_sample": images_per_sample,
        },
        "limit": limit,
    }
    if judge:
        info["scoring"] = {"judge": {"spec": judge}}
        info["scorer"] = {"judge": {"backend": "openai", "model": judge, "snapshot": f"{judge}-2025"}}
    if records is not None:
        from evalkit.report.stats import official_aggregate

        values = dict(official_aggregate(info)(records))
        (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        scored = planned = len(records)
    summary = {
        "benchmark": protocol.split("@")[0],
        "protocol": protocol,
        "table": values,
        "n_scored": scored,
        "n_planned": planned,
        "n_records": scored,
        **(summary_extra or {}),
    }
    (run / "run.json").write_text(json.dumps(info))
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_markdown_latex_csv_and_baseline_deltas(tmp_path):
    a = _fake_run(tmp_path, "sd35m", "geneval", {"Single Obj.": 0.98, "Overall": 0.62})
    b = _fake_run(tmp_path, "sd35m-grpo", "geneval", {"Single Obj.": 0.99, "Overall": 0.70})
    table = build_table([a, b], baseline=a)
    md = render(table, "md")
    assert md.splitlines()[0] == "| Model | Single Obj. | Overall |"
    assert "| sd35m-grpo | **0.99** (+0.01) | **0.70** (+0.08) |" in md
    assert "| sd35m (baseline) | 0.98 | 0.62 |" in md  # no +0.00 on the baseline row
    assert "+0.00" not in md
    assert "protocol: geneval" in md
    latex = render(table, "latex")
    assert r"\toprule" in latex and r"sd35m-grpo & \textbf{0.99} (+0.01) & \textbf{0.70} (+0.08) \\" in latex
    rows = list(csv.reader(io.StringIO(render(table, "csv"))))
    assert rows[0] == ["Model", "Single Obj.", "Single Obj. delta", "Overall", "Overall delta"]
    assert rows[2][0] == "sd35m-grpo" and float(rows[2][1]) == 0.99


def test_two_runs_of_one_model_are_two_rows_whatever_the_order(tmp_path):
    """The bug: rows keyed by model name, the last run won and the argument order changed the table."""
    a = _fake_run(tmp_path, "m-a", "geneval", {"Overall": 0.50}, model="sd35m", seed=1)
    b = _fake_run(tmp_path, "m-b", "geneval", {"Overall": 0.60}, model="sd35m", seed=2)
    forward, backward = build_table([a, b]), build_table([b, a])
    assert [r.label for r in forward.rows] == ["sd35m [seed=1]", "sd35m [seed=2]"]
    assert {r.label: r.cells[("geneval", "Overall")].value for r in forward.rows} == {
        r.label: r.cells[("geneval", "Overall")].value for r in backward.rows
    }
    c = _fake_run(tmp_path, "m-c", "geneval", {"Overall": 0.7}, model="sd35m", seed=2, options={"steps": 20})
    labels = [r.label for r in build_table([a, b, c]).rows]
    assert labels == ["sd35m [seed=1, steps=null]", "sd35m [seed=2, steps=null]", "sd35m [seed=2, steps=20]"]


def test_same_label_twice_is_an_error_and_labels_name_runs(tmp_path):
    a = _fake_run(tmp_path, "a", "geneval", {"Overall": 0.5}, model="sd35m")
    b = _fake_run(tmp_path, "b", "geneval", {"Overall": 0.6}, model="sd35m")
    with pytest.raises(EvalkitError, match="two geneval runs have the label 'sd35m'.*--label"):
        build_table([a, b])
    named = build_table([a, b], labels=["before", "after"])
    assert [r.label for r in named.rows] == ["before", "after"]
    by_dir = build_table([a, b], labels=[f"{b}=after", f"{a}=before"])
    assert [r.label for r in by_dir.rows] == ["before", "after"]
    with pytest.raises(EvalkitError, match="2 labels for 1 run folders"):
        build_table([a], labels=["x", "y"])
    with pytest.raises(EvalkitError, match="label 'same'"):
        build_table([a, b], labels=["same", "same"])


def test_runs_of_different_benchmarks_share_a_row(tmp_path):
    g = _fake_run(tmp_path, "sd35m", "geneval", {"Overall": 0.6})
    w = _fake_run(tmp_path, "sd35m", "wise@legacy", {"Overall": 0.4})
    table = build_table([g, w])
    assert [r.label for r in table.rows] == ["sd35m"]
    assert render(table, "md").splitlines()[0] == "| Model | geneval: Overall | wise@legacy: Overall |"


def test_protocols_get_their_own_columns_and_judges_are_never_mixed(tmp_path):
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5})
    b = _fake_run(tmp_path, "m2", "geneval@long", {"Overall": 0.6})
    assert build_table([a, b]).columns == [("geneval", "Overall"), ("geneval@long", "Overall")]
    x = _fake_run(tmp_path, "x", "tiif", {"Overall": 0.5}, judge="gpt-4.1")
    y = _fake_run(tmp_path, "y", "tiif", {"Overall": 0.6}, judge="qwen2.5-vl-72b")
    with pytest.raises(EvalkitError, match="cannot mix judges .* in one tiif column"):
        build_table([x, y])


def test_footnotes_once_per_table_with_judge_partial_failures_and_random_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "no-data"))  # N unknown: "n images scored"
    runs = [
        _fake_run(
            tmp_path,
            f"tiny-sd3-{i}",
            "tiif",
            {"Overall": 0.1 * i},
            model="tiny-sd3",
            seed=i,
            judge="gpt-4.1",
            limit=4,
            scored=3,
            planned=4,
            summary_extra={"n_failed": 1, "n_records": 4, "failure_reasons": {"HTTP 500": 1}},
        )
        for i in range(3)
    ]
    md = render(build_table(runs), "md")
    notes = md.split("\n\n", 1)[1]
    assert notes.count("random weights") == 1 and "tiny-sd3 (generator)" in notes
    assert notes.count("judge (tiif): gpt-4.1 (openai; snapshot gpt-4.1-2025)") == 1
    same = "tiny-sd3 [seed=0], tiny-sd3 [seed=1], tiny-sd3 [seed=2] on tiif"  # one note names every row
    assert f"partial runs: {same}: 3 of 4 planned images scored (--limit 4: first 4 prompts)\n" in notes
    assert "1 judge failures (not scored; 3/4 images scored), most often: HTTP 500" in notes
    assert notes.count("partial runs") == 1 and notes.count("failures:") == 1


def test_limit_runs_are_footnoted_even_when_every_planned_image_is_scored(tmp_path, monkeypatch):
    """`--limit` makes n_planned the limited count: the run looked complete and got no footnote."""
    monkeypatch.setenv("EVALKIT_DATA", str(tmp_path / "no-data"))
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5}, scored=32, planned=32, limit=8)
    assert "partial runs: m on geneval: 32 of 32 planned images scored (--limit 8" in render(
        build_table([a]), "md"
    )
    w = _fake_run(
        tmp_path,
        "w",
        "wise@legacy",
        {"Overall": 0.5},
        scored=2,
        planned=2,
        limit=2,
        summary_extra={"n_missing": 998},
        images_per_sample=1,
    )
    assert "2 of 1000 images scored (--limit 2" in render(build_table([w]), "md")


def test_partial_runs_say_n_of_the_protocols_n(tmp_path, monkeypatch, data_dir):
    from evalkit.benchmarks.geneval import GenEval

    monkeypatch.setenv("EVALKIT_DATA", str(data_dir))
    total = len(GenEval(data_dir).samples()) * 4
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5}, scored=32, planned=32, limit=8)
    assert f"32 of {total} images scored (--limit 8" in render(build_table([a]), "md")


def test_ties_are_bold_only_when_someone_is_worse():
    assert best_keys({"a": 0.0, "b": 0.0}, 2) == []
    assert best_keys({"a": 0.5, "b": 0.5, "c": 0.2}, 2) == ["a", "b"]
    assert best_keys({"a": 0.501, "b": 0.499, "c": 0.1}, 2) == ["a", "b"]  # equal as printed: a tie
    assert best_keys({"a": 0.5}, 2) == [] and best_keys({"a": 0.5, "b": None}, 2) == []


def test_tied_zeros_are_not_bold_and_failed_cells_say_why(tmp_path):
    a = _fake_run(tmp_path, "a", "geneval", {"Overall": 0.0})
    b = _fake_run(tmp_path, "b", "geneval", {"Overall": 0.0})
    c = _fake_run(
        tmp_path, "c", "geneval", {"Overall": None}, scored=0, summary_extra={"n_failed": 8, "n_records": 8}
    )
    md = render(build_table([a, b, c]), "md")
    assert "**" not in md
    assert "| c | failed (8 judge failures) |" in md


def test_failed_run_folders_are_skipped_with_a_warning(tmp_path):
    ok = _fake_run(tmp_path, "ok", "geneval", {"Overall": 0.5})
    broken = tmp_path / "geneval" / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"model": "x", "protocol": "geneval"}))
    table = build_table(sorted((tmp_path / "geneval").iterdir()))
    assert [r.label for r in table.rows] == ["ok"]
    assert table.warnings == [f"skipped {broken}: no summary.json (never scored, or its run failed)"]
    assert any(n.startswith("skipped: broken (no summary.json") for n in table.footnotes)
    with pytest.raises(EvalkitError, match="no summary.json"):
        build_table([broken])
    with pytest.raises(EvalkitError, match="no such run folder"):
        build_table([ok, tmp_path / "nope"])


def test_latex_escapes_special_characters():
    assert latex_escape("sd35m_grpo 50% A&B #3 $x ~^{}\\ --limit") == (
        r"sd35m\_grpo 50\% A\&B \#3 \$x \textasciitilde{}\textasciicircum{}\{\}\textbackslash{} -{}-limit"
    )


def test_intervals_and_paired_p_values(tmp_path):
    a = _fake_run(tmp_path, "base", "geneval", records=_geneval_records(0, 0.3, prompts=60))
    same = _fake_run(tmp_path, "same", "geneval", records=_geneval_records(0, 0.3, prompts=60))
    better = _fake_run(tmp_path, "better", "geneval", records=_geneval_records(0, 0.9, prompts=60))
    table = build_table([a, same, better], baseline=a, ci=True, resamples=200)
    overall = ("geneval", "Overall")
    base_cell, same_cell, better_cell = (table.row(x).cells[overall] for x in ("base", "same", "better"))
    assert base_cell.ci.low < base_cell.value < base_cell.ci.high and base_cell.n == 60
    assert base_cell.delta is None and same_cell.delta == 0 and same_cell.p_value == 1.0
    assert better_cell.p_value < 0.01
    md = render(table, "md")
    assert f"**{better_cell.value:.2f}** ± {better_cell.ci.half_width:.2f} (+{better_cell.delta:.2f}**)" in md
    assert "bootstrap percentile interval (200 resamples" in md and "** p < 0.01" in md
    latex = render(table, "latex")
    assert rf"{{\scriptsize $\pm${better_cell.ci.half_width:.2f}}}" in latex and "$^{**}$" in latex
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert rows[2]["Overall n"] == "60" and float(rows[2]["Overall p"]) < 0.01
    assert float(rows[2]["Overall ci_low"]) < float(rows[2]["Overall"]) < float(rows[2]["Overall ci_high"])


def test_report_cli_writes_file_and_rejects_unknown_format(cli, tmp_path):
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5})
    code, _, err = cli("report", a, "--format", "latex", "--output", tmp_path / "t.tex")
    assert code == 0, err
    assert r"\begin{tabular}" in (tmp_path / "t.tex").read_text()
    code, _, err = cli("report", a, "--format", "html")
    assert code == 2 and "unknown format 'html'" in err
    code, _, err = cli("report", tmp_path / "nope")
    assert code == 2 and "no such run folder" in err


def test_report_cli_labels_intervals_and_skipped_folders(cli, tmp_path):
    a = _fake_run(tmp_path, "a", "geneval", records=_geneval_records(0, 0.3), model="sd35m")
    b = _fake_run(tmp_path, "b", "geneval", records=_geneval_records(1, 0.8), model="sd35m")
    (tmp_path / "geneval" / "failed").mkdir()
    code, _, err = cli("report", a, b)
    assert code == 2 and "name them apart with --label" in err
    code, out, err = cli(
        "report",
        *sorted((tmp_path / "geneval").iterdir()),
        "--label",
        f"{a}=base",
        "--label",
        f"{b}=tuned",
        "--ci",
        "--resamples",
        "50",
        "--baseline",
        a,
        "--format",
        "csv",
    )
    assert code == 0, err
    assert err.strip().startswith("warning: skipped") and "failed" in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["Model"] for r in rows] == ["base", "tuned"]
    assert rows[0]["Overall delta"] == "" and rows[1]["Overall p"] != ""
    code, _, err = cli("report", a, "--label", "x", "--label", "y")
    assert code == 2 and "2 labels for 1 run folders" in err


def test_srr_counts_and_incomplete_tasks_are_footnoted(tmp_path):
    srr = {"gate": "self", "images": 8, "refined": 3, "kept": 5, "abstained": 2}
    a = _fake_run(tmp_path, "m", "geneval", {"Overall": 0.5}, summary_extra={"srr": srr, "complete": False})
    notes = render(build_table([a]), "md")
    assert (
        "SRR: m on geneval: 3 of 8 images refined, 5 kept by the gate, 2 gate decisions without a signal"
        in notes
    )
    assert "incomplete: m on geneval: not every task present" in notes


def test_summary_records_the_protocol_size_for_n_of_n(tmp_path):
    """`--limit` runs plan only their prompts: the summary keeps the protocol's size for the footnote."""
    from evalkit import pipeline
    from evalkit.benchmarks.base import Benchmark, Sample
    from evalkit.runs import Run

    class Five(Benchmark):
        name, protocol, images_per_sample, columns = "five", "five", 2, ["Overall"]

        def samples(self):
            return [Sample(id=str(i), prompt=f"p{i}") for i in range(5)]

        def make_scorer(self, **options):
            raise NotImplementedError

        def aggregate(self, records):
            return {"table": {"Overall": sum(r["v"] for r in records) / len(records)}}

    bench, run = Five(), Run(tmp_path / "five" / "m")
    run.write_info({"model": "m", "protocol": "five", "benchmark": "five", "limit": 1})
    for k in range(2):
        run.append_record({"id": f"0/{k}", "sample_id": "0", "k": k, "v": 1.0})
    summary = pipeline.summarize(run, bench, bench.samples()[:1])
    assert (summary["n_planned"], summary["n_protocol_images"]) == (2, 10)
    note = next(n for n in build_table([run.root]).footnotes if n.startswith("partial runs"))
    assert note == "partial runs: m on five: 2 of 10 images scored (--limit 1: first 1 prompts)"

    # A limit that reaches past the last prompt cuts nothing: the whole protocol ran, no partial note.
    whole = Run(tmp_path / "five" / "all")
    whole.write_info({"model": "all", "protocol": "five", "benchmark": "five", "limit": 553})
    for sample in bench.samples():
        for k in range(2):
            whole.append_record({"id": f"{sample.id}/{k}", "sample_id": sample.id, "k": k, "v": 1.0})
    pipeline.summarize(whole, bench, bench.samples())
    assert not [n for n in build_table([whole.root]).footnotes if n.startswith("partial runs")]


def test_judge_footnote_names_the_snapshots_the_server_answered_with(tmp_path):
    """The pinned snapshot is what was asked for; the reply cache records what actually answered."""
    import sqlite3

    a = _fake_run(tmp_path, "m", "tiif", {"Overall": 0.5}, judge="gpt-4.1")
    with sqlite3.connect(a / "judge_cache.sqlite") as db:
        db.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        for i, snap in enumerate(["gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", "gpt-4.1-2025-06-01"]):
            db.execute(
                "INSERT INTO replies VALUES (?, ?, 0)",
                (str(i), json.dumps({"text": "yes", "snapshot": snap})),
            )
    notes = render(build_table([a]), "md")
    assert (
        "judge (tiif): gpt-4.1 (openai; snapshot gpt-4.1-2025; served gpt-4.1-2025-04-14, gpt-4.1-2025-06-01)"
        in notes
    )


def test_benchmark_options_do_not_split_a_models_row_across_benchmarks(tmp_path):
    def with_options(run: Path, options: dict) -> Path:
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "bench_options": options}))
        return run

    g = _fake_run(tmp_path, "g", "geneval", {"Overall": 0.5}, model="sd35m")
    t = with_options(_fake_run(tmp_path, "t", "tiif", {"Overall": 0.5}, model="sd35m"), {"split": "testmini"})
    assert [r.label for r in build_table([g, t]).rows] == ["sd35m"]
    w1 = with_options(
        _fake_run(tmp_path, "w1", "wise@legacy", {"Overall": 0.5}, model="sd35m"), {"think": True}
    )
    w2 = with_options(
        _fake_run(tmp_path, "w2", "wise@legacy", {"Overall": 0.6}, model="sd35m"), {"think": False}
    )
    labels = [r.label for r in build_table([g, w1, w2]).rows]
    assert labels == ["sd35m", "sd35m [think=true]", "sd35m [think=false]"]

"""`evalkit.evaluate`, the library entry point: one call runs a resumable evaluation on tiny models."""

from __future__ import annotations

import json

import pytest

import evalkit
from evalkit.errors import EvalkitError


def test_evaluate_runs_then_resumes_without_loading(data_dir, tmp_path, monkeypatch):
    kwargs = dict(limit=1, data_dir=data_dir, runs_dir=tmp_path, score_options={"detector": "tiny"})
    first = evalkit.evaluate("geneval", "tiny-sd3", show_progress=False, **kwargs)
    assert first.generator is not None and first.protocol == "geneval" and first.model == "tiny-sd3"
    assert set(first.table) >= {"Overall"} and first.summary["n_scored"] == first.summary["n_planned"] == 4
    assert json.loads((first.run_dir / "summary.json").read_text())["table"] == first.table

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished run must load nothing")

    monkeypatch.setattr("evalkit.evaluator.generator_factory", lambda *a: no_loading)
    monkeypatch.setattr("evalkit.benchmarks.geneval.GenEval.make_scorer", no_loading)
    again = evalkit.evaluate("geneval", "tiny-sd3", show_progress=False, **kwargs)
    assert again.run_dir == first.run_dir and again.table == first.table and again.generator is None


def test_generate_only_then_score_run(data_dir, tmp_path):
    made = evalkit.evaluate(
        "geneval", "tiny-sd3", limit=1, data_dir=data_dir, runs_dir=tmp_path, stages=("generate",),
        show_progress=False,
    )  # fmt: skip
    assert made.summary is None and len(list(made.run_dir.glob("samples/*/*.png"))) == 4
    assert not (made.run_dir / "records.jsonl").exists()
    scored = evalkit.score_run(made.run_dir, data_dir=data_dir, score_options={"detector": "tiny"})
    assert scored.summary["n_scored"] == 4 and "Overall" in scored.table


def test_checks_come_before_any_work(data_dir, tmp_path):
    with pytest.raises(EvalkitError, match="judge"):
        evalkit.evaluate("tiif", "tiny-sd3", limit=1, data_dir=data_dir, runs_dir=tmp_path)
    with pytest.raises(EvalkitError, match="did you mean 'geneval'"):
        evalkit.evaluate("genevla", "tiny-sd3", data_dir=data_dir, runs_dir=tmp_path)
    with pytest.raises(EvalkitError, match="did you mean 'max_attempts'"):
        evalkit.evaluate("tiif", "tiny-sd3", judge="tiny", score_options={"max_atempts": 2}, data_dir=data_dir,
                         runs_dir=tmp_path)  # fmt: skip
    with pytest.raises(EvalkitError, match="unknown stage"):
        evalkit.evaluate("geneval", "tiny-sd3", data_dir=data_dir, runs_dir=tmp_path, stages=("draw",))
    with pytest.raises(EvalkitError, match="unknown SRR gate"):
        evalkit.evaluate("geneval", "tiny-sd3", srr=evalkit.SRROptions(1, "sometimes"), runs_dir=tmp_path)
    with pytest.raises(EvalkitError, match="tiny-sd3 cannot refine"):
        evalkit.evaluate("geneval", "tiny-sd3", srr=1, data_dir=data_dir, runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # no run folder was even opened
    # No reward judge: the model must check itself. BAGEL declares it can (its own reflection decides).
    from evalkit.evaluator import check_capabilities, load_benchmark

    bench = load_benchmark("geneval", data_dir=data_dir)
    check_capabilities("bagel", {}, bench, bench.samples()[:1], evalkit.SRROptions(1, "self"))

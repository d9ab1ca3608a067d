"""`--rescore` is transactional: old records, summary and report stay in force until every image has a new
record; an interrupted rescore resumes from its staged records; nobody writes beside it."""

from __future__ import annotations

import importlib.util
import json

import pytest
from judged_helpers import BENCHMARKS, ScriptedVLM, build_data_dir

from evalkit.runs import Run

if not (BENCHMARKS / "wise").is_dir():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
if importlib.util.find_spec("openai") is None or importlib.util.find_spec("diffusers") is None:
    pytest.skip("openai and diffusers are needed", allow_module_level=True)

N = 4


def test_an_interrupted_rescore_leaves_the_old_table_in_force_and_resumes(cli, tmp_path):
    from evalkit.judges.server import JudgeServer

    data = build_data_dir(tmp_path / "d")
    runs = tmp_path / "runs"
    vlm = ScriptedVLM("scripted-judge", "Consistency: 2\nRealism: 1\nAesthetic Quality: 1")
    with JudgeServer(vlm) as server:
        judge = ["--judge", "openai:scripted-judge", "--judge-url", server.url, "--data-dir", data]
        code, out, err = cli("run", "wise", "--model", "tiny-sd3", "--limit", N, "--runs-dir", runs, *judge)
        assert code == 0, err
        (run_dir,) = (runs / "wise@legacy").iterdir()
        old_records = (run_dir / "records.jsonl").read_bytes()
        old_summary = (run_dir / "summary.json").read_bytes()
        # break the last image: the rescore (other judge settings) stops there
        run = Run(run_dir)
        last = sorted(p for p in (run_dir / "samples").rglob("0.png"))[-1]
        good = last.read_bytes()
        last.write_bytes(b"not a png")
        rescore = ["score", run_dir, "--rescore", *judge, "--judge-option", "seed=7", "--batch-size", 1]
        code, out, err = cli(*rescore)
        assert code == 2 and "corrupt image" in err
        assert (run_dir / "records.jsonl").read_bytes() == old_records
        assert (run_dir / "summary.json").read_bytes() == old_summary
        (staging,) = run_dir.glob("records.rescore-*.jsonl")
        assert len(staging.read_text().splitlines()) == N - 1
        code, out, err = cli("report", run_dir)
        assert code == 0, err
        # repaired: the rescore asks only for the image it had left, then replaces the records at once
        last.write_bytes(good)
        before = server.requests
        code, out, err = cli(*rescore)
        assert code == 0, err
        assert server.requests == before + 1 and not staging.exists()
    records = run.records()
    assert len(records) == N and len({r["scorer_hash"] for r in records}) == 1
    assert records[0]["scorer_hash"] not in old_records.decode()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scorer_hash"] == [records[0]["scorer_hash"]] and summary["n_records"] == N
    assert list(run_dir.glob("records.*.bak.jsonl"))  # the old records are kept aside

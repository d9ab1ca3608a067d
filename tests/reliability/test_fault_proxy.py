"""A judge behind a proxy that injects faults into 30% of requests (5xx, hangs, garbage, empty choices,
empty content): failures are recorded, never scored, and a re-run against the healthy judge asks again
for exactly the failed images (`--no-retry-failed` keeps them)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from judged_helpers import BENCHMARKS, ScriptedVLM, build_data_dir

from evalkit.runs import read_jsonl

if not (BENCHMARKS / "wise").is_dir():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
if importlib.util.find_spec("openai") is None or importlib.util.find_spec("diffusers") is None:
    pytest.skip("openai and diffusers are needed", allow_module_level=True)

GOOD = "Consistency: 2\nRealism: 1\nAesthetic Quality: 1"
N = 8


def _records(run_dir):
    return {r["id"]: r for r in read_jsonl(run_dir / "records.jsonl")}


def test_faults_are_recorded_and_a_healthy_rerun_fills_exactly_the_failures(cli, tmp_path):
    from evalkit.judges.faultproxy import FaultProxy
    from evalkit.judges.server import JudgeServer

    data = build_data_dir(tmp_path / "d")
    runs = tmp_path / "runs"
    asked: list[str] = []

    def reply(text, images):
        asked.append(text)
        return GOOD

    server = JudgeServer(ScriptedVLM("scripted-judge", reply))
    with server, FaultProxy(server.url, rate=0.3, seed=3, hang_s=3.0) as proxy:
        judge = ["--judge", "openai:scripted-judge", "--judge-url", proxy.url, "--data-dir", data]
        for option in ("max_retries=0", "timeout=1.0", "concurrency=1"):
            judge += ["--judge-option", option]
        args = ["run", "wise", "--model", "tiny-sd3", "--limit", N, "--runs-dir", runs, *judge]
        code, out, err = cli(*args)
        assert code == 0, err
        (run_dir,) = (runs / "wise@legacy").iterdir()
        first = _records(run_dir)
        failed = sorted(i for i, r in first.items() if r["failed"])
        assert len(first) == N and failed and sum(proxy.injected.values()) == len(failed)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["n_failed"] == len(failed) and summary["n_scored"] == N - len(failed)

        proxy.rate = 0.0  # the judge is healthy again
        before = server.requests
        code, out, err = cli(*args, "--no-retry-failed")
        assert code == 0, err
        assert server.requests == before and _records(run_dir) == first

        asked.clear()
        code, out, err = cli(*args)
        assert code == 0, err
    assert server.requests == before + len(failed) == before + len(asked)
    second = _records(run_dir)
    assert not any(r["failed"] for r in second.values())
    assert all(second[i] == first[i] for i in first if i not in failed)  # the rest untouched
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_failed"] == 0 and summary["n_scored"] == N

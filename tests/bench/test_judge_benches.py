"""The HTTP judge bench scripts run end to end at small sizes, so they cannot rot unseen."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from fixture_paths import BENCHMARKS, REPO, need

if importlib.util.find_spec("openai") is None:
    pytest.skip("openai is needed", allow_module_level=True)


def _bench(script: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_judged_benchmark_bench_prints_a_ratio_with_identical_records(tmp_path):
    need(BENCHMARKS / "wise", "official benchmark data (../shared/benchmarks)")
    rows = tmp_path / "rows.jsonl"
    result = _bench(
        "judge_http_concurrency.py", "--images", "6", "--latency", "0.05", "--concurrency", "8",
        "--data-dir", str(BENCHMARKS), "--json", str(rows), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "records identical: True; failed records: 0" in result.stdout
    (row,) = [json.loads(line) for line in rows.read_text().splitlines()]
    assert row["bench"] == "judge_http_concurrency" and row["ratio"] > 0 and row["identical"]


def test_dvreward_bench_http_mode(tmp_path):
    rows = tmp_path / "rows.jsonl"
    result = _bench(
        "dvreward_verify.py", "--configs", "--http-images", "3", "--questions", "3", "--http-latency", "0.02",
        "--json", str(rows), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (row,) = [json.loads(line) for line in rows.read_text().splitlines()]
    assert row["bench"] == "dvreward_verify_http" and row["ratio"] > 0 and row["ratio_vs_sequential"] > 0


def test_reward_bench_mode_prints_ratios_with_identical_rewards(tmp_path):
    rows = tmp_path / "rows.jsonl"
    result = _bench(
        "judge_http_concurrency.py", "--rewards", "--images", "4", "--latency", "0.02", "--concurrency", "8",
        "--json", str(rows), tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [row["config"].split()[0] for row in found] == ["viescore", "unifiedreward"]
    assert all(
        row["bench"] == "reward_http_concurrency" and row["ratio"] > 0 and row["identical"] for row in found
    )

"""bench/gpu_suite.sh runs in CI at tiny CPU shapes (--dry-run), so the GPU suite cannot rot unseen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fixture_paths import REPO

SUITE = REPO / "bench" / "gpu_suite.sh"


def _run(*args: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", str(SUITE), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_dry_run_measures_every_bench_and_prints_one_table(tmp_path):
    rows_file = tmp_path / "rows.jsonl"
    result = _run("--dry-run", "--out", str(rows_file), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    expected = {"geneval_scoring", "bagel_generation", "dvreward_verify", "flow_grpo_step"}
    if (REPO / "bench" / "alphagrpo_step.py").exists():
        expected.add("alphagrpo_step")
    assert {r["bench"] for r in rows} == expected
    for row in rows:
        assert row["ratio"] > 0 and row["images_per_s"] > 0, row
    table = result.stdout[result.stdout.index("| bench |") :]
    assert all(name in table for name in expected)


def test_unknown_argument_is_one_line_and_exit_2(tmp_path):
    result = _run("--dryrun", tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--dry-run" in result.stderr

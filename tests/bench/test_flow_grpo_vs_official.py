"""bench/flow_grpo_vs_official.py: argument errors are one line (exit 2), and its evalkit side runs on CPU.

The official side needs a yifan123/flow_grpo checkout, which tests never have."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fixture_paths import REPO

SCRIPT = REPO / "bench" / "flow_grpo_vs_official.py"


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_missing_or_wrong_official_repo_is_one_line_exit_2(tmp_path):
    for args in ([], ["--official-repo", str(tmp_path)]):
        result = _run(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --official-repo"), result.stderr
        assert "Traceback" not in result.stderr


def test_unknown_config_is_refused(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "train_sd3.py").write_text("")
    (tmp_path / "flow_grpo").mkdir()
    result = _run("--official-repo", str(tmp_path), "--configs", "cfg,fast", cwd=tmp_path)
    assert result.returncode == 2 and "unknown ['fast']" in result.stderr


def test_evalkit_side_times_epochs_without_official_code(tmp_path):
    result = _run(
        "--worker", "evalkit", "--worker-config", "nocfg", "--epochs", "1", "--num-steps", "2",
        "--batches", "1", "--beta", "0", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["side"] == "evalkit" and len(row["seconds"]) == 1 and row["seconds"][0] > 0

"""Ctrl-C and a scheduler's SIGTERM in the middle of a real `evalkit run` (subprocess): the conventional exit
code, one line saying how to resume, no traceback, and the same command then finishes the run."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest
from fixture_paths import BENCHMARKS

from evalkit.testing.reliability import run_cli

if not (BENCHMARKS / "geneval" / "evaluation_metadata.jsonl").exists():
    pytest.skip("official benchmark data (../shared/benchmarks) not present", allow_module_level=True)
if importlib.util.find_spec("diffusers") is None:
    pytest.skip("diffusers is needed", allow_module_level=True)


def _args(runs):
    return ["run", "geneval", "-m", "tiny-sd3", "--detector", "tiny", "--limit", "3", "--batch-size", "1",
            "--data-dir", str(BENCHMARKS), "--runs-dir", str(runs)]  # fmt: skip


def _records(runs) -> int:
    return sum(len(p.read_text().splitlines()) for p in runs.glob("*/*/records.jsonl"))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_exits_with_its_code_and_the_same_command_resumes(tmp_path, signum, code):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalkit.cli", *_args(runs)],
        env={**os.environ, "EVALKIT_NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while _records(runs) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "re-run the same command to resume" in stderr
    done_before = _records(runs)
    assert 1 <= done_before < 12  # 3 prompts x 4 images: interrupted, nothing lost

    assert run_cli(_args(runs)) == 0
    (run_dir,) = runs.glob("*/*")
    assert _records(runs) == 12 and (run_dir / "summary.json").exists()

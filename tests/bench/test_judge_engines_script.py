"""bench/judge_engines_gpu.{sh,py}, the GPU check of the vllm:/sglang: judges, cannot rot: its reference and
served steps run here on the tiny judge (the project's server standing in for the engine) and `compare`
flags a P(yes) that strays."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.judges.serve import COMMAND_ENV

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "judge_engines_gpu.py"
SMALL = ["--model", "tiny", "--images", "1", "--questions", "3", "--size", "32", "--top-logprobs", "512"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_gpu_check_steps_run_and_compare_against_the_hf_judge(tmp_path) -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "judge_engines_gpu.sh")]).returncode == 0
    ref, served = tmp_path / "ref.json", tmp_path / "served.json"
    done = _run("reference", *SMALL, "--device", "cpu", "--dtype", "float32", "--out", str(ref))
    assert done.returncode == 0, done.stderr
    stand_in = (
        f"{shlex.quote(sys.executable)} -m evalkit.judges.server --judge tiny --host {{host}} --port {{port}} "
        "--model-name {served_name} --max-logprobs 1024"
    )
    done = _run("served", *SMALL, "--out", str(served), env={COMMAND_ENV: stand_in})
    assert done.returncode == 0, done.stderr
    assert json.loads(served.read_text())["exit_code_after_sigint"] == 0
    done = _run("compare", str(ref), str(served))
    assert done.returncode == 0, done.stdout
    off = json.loads(served.read_text())
    off["p_yes"] = [[p + 0.2 for p in row] for row in off["p_yes"]]
    (tmp_path / "off.json").write_text(json.dumps(off))
    done = _run("compare", str(ref), str(tmp_path / "off.json"))
    assert done.returncode == 1 and "FAIL" in done.stdout

"""Two CPU processes (gloo) give the same rewards, advantages, loss and weights per step as one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("alphagrpo_dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(nproc: int, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(WORKER), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_processes_match_one(tmp_path):
    one = _run(1, tmp_path / "one.json")
    two = _run(2, tmp_path / "two.json")
    assert len(one["records"]) == len(two["records"])
    for a, b in zip(one["records"], two["records"], strict=True):
        assert a["samples"] == b["samples"]
        for key in ("reward_mean", "reward_avg_mean", "loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        assert b["advantages"] == pytest.approx(a["advantages"], rel=1e-5, abs=1e-6)
    for name, value in one["lora"].items():
        assert two["lora"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name

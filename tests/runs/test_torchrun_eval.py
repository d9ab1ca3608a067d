"""`evalkit run` under torchrun: 2 CPU ranks give the records, images and summary of 1 process, rank 0
merges without a merge step, a failing or stuck rank stops the others with one line naming it, and a
killed job resumes with the same command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.runs import read_jsonl

WORKER = Path(__file__).with_name("torchrun_fault_worker.py")
LIMIT = 3  # 3 prompts x 4 images: rank 0 gets 2 prompts (2 batches), rank 1 one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(data_dir: Path, runs: Path) -> list[str]:
    return ["run", "geneval", "--model", "tiny-sd3", "--detector", "tiny", "--limit", str(LIMIT),
            "--data-dir", str(data_dir), "--runs-dir", str(runs)]  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _torchrun(nproc: int, target: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           "--master-addr=127.0.0.1", f"--master-port={_free_port()}", *target]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _run_dir(runs: Path) -> Path:
    (run_dir,) = (runs / "geneval").iterdir()
    return run_dir


def _records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(run_dir / "records.jsonl")]


def _images(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.glob("samples/*/*.png"))}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> tuple[Path, Path]:
    """The reference: the same command in one plain process."""
    from fixture_paths import BENCHMARKS, need

    need(
        BENCHMARKS / "geneval" / "evaluation_metadata.jsonl", "official benchmark data (../shared/benchmarks)"
    )
    runs = tmp_path_factory.mktemp("one")
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", *_args(BENCHMARKS, runs)], env=_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return BENCHMARKS, _run_dir(runs)


def _assert_same_as(one: Path, two: Path) -> None:
    assert not list(two.glob("records.rank*.jsonl"))  # rank 0 merged them
    assert _records(two) == _records(one)
    assert _images(two) == _images(one)
    assert json.loads((two / "summary.json").read_text()) == json.loads((one / "summary.json").read_text())


def test_two_ranks_match_one_process(one_process, tmp_path):
    data_dir, one = one_process
    done = _torchrun(2, ["-m", "evalkit.cli", *_args(data_dir, tmp_path)], _env())
    assert done.returncode == 0, done.stderr[-3000:]
    two = _run_dir(tmp_path)
    _assert_same_as(one, two)
    assert done.stdout.count("Single Obj.") == 1  # rank 0 prints the table; no merge hint
    assert "evalkit merge" not in done.stdout + done.stderr
    info = json.loads((two / "run.json").read_text())
    assert info["distributed"]["world_size"] == 2
    assert {(h["rank"], h["world_size"]) for h in info["history"]} == {(0, 2), (1, 2)}


def _by_hand(tmp_path: Path, data_dir: Path, fault: str, **env: str) -> list[subprocess.Popen]:
    """Two ranks started without torchrun (rank 0 hosts the store), rank 1 with a fault."""
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        extra = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": port, "EVALKIT_TEST_FAULT": fault, "EVALKIT_TEST_FAULT_RANK": "1", **env}  # fmt: skip
        cmd = [sys.executable, str(WORKER), *_args(data_dir, tmp_path), "--batch-size", "2"]
        procs.append(subprocess.Popen(cmd, env=_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
    return procs


def test_a_failing_rank_stops_the_others_with_one_line(one_process, tmp_path):
    procs = _by_hand(tmp_path, one_process[0], "fail")
    _, err0 = procs[0].communicate(timeout=600)
    _, err1 = procs[1].communicate(timeout=600)
    assert procs[1].returncode != 0 and "injected generator fault" in err1
    assert procs[0].returncode == 1, err0
    (line,) = [x for x in err0.strip().splitlines() if x.startswith("error:")]
    assert "rank 1 (" in line and "RuntimeError: injected generator fault" in line and "resume" in line


def test_a_stuck_rank_is_named_after_the_timeout(one_process, tmp_path):
    procs = _by_hand(tmp_path, one_process[0], "hang", EVALKIT_DIST_TIMEOUT="3")
    try:
        _, err0 = procs[0].communicate(timeout=600)
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode == 1, err0
    (line,) = [x for x in err0.strip().splitlines() if x.startswith("error:")]
    assert "without progress for rank 1 (" in line and "EVALKIT_DIST_TIMEOUT" in line


def test_a_killed_job_resumes_with_the_same_command(one_process, tmp_path):
    data_dir, one = one_process
    args = _args(data_dir, tmp_path)
    env = _env(EVALKIT_TEST_FAULT="kill", EVALKIT_TEST_FAULT_RANK="0")
    killed = _torchrun(2, [str(WORKER), *args], env)
    assert killed.returncode != 0
    two = _run_dir(tmp_path)
    assert 0 < len(_images(two)) < LIMIT * 4 and not (two / "summary.json").exists()
    done = _torchrun(2, ["-m", "evalkit.cli", *args], _env())
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_as(one, two)

"""`--rescore` under torchrun: 2 CPU ranks stage their shards and rank 0 commits the records and summary
of a 1-process rescore; an interrupted rescore leaves the old records in force and resumes from what was
staged (a rank SIGKILLed or failing mid-shard), with the same or another world size; independent
RANK/WORLD_SIZE shards stay refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_torchrun_eval import WORKER, _args, _env, _records, _run_dir, _torchrun

from evalkit.runs import read_jsonl

RULES = ["--score-option", "threshold=0.2"]  # other scorer settings than the run's: a real rescore
# one image per detector call everywhere: the tiny detector's last float digits depend on the batch's size,
# and an interrupted rescore necessarily scores in other batches than an uninterrupted one
ONE_AT_A_TIME = ["--batch-size", "1"]


def _rescore(run_dir: Path, *extra: str) -> list[str]:
    return ["score", str(run_dir), "--rescore", "--detector", "tiny", *RULES, *ONE_AT_A_TIME, *extra]


def _one(target: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *target], env=_env(**env),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, Path]:
    """A scored run (kept as it is) and the same run rescored in one process (the reference)."""
    from fixture_paths import BENCHMARKS, need

    need(
        BENCHMARKS / "geneval" / "evaluation_metadata.jsonl", "official benchmark data (../shared/benchmarks)"
    )
    runs = tmp_path_factory.mktemp("base")
    done = _one(_args(BENCHMARKS, runs))
    assert done.returncode == 0, done.stderr[-3000:]
    base = _run_dir(runs)
    one = _copy(base, tmp_path_factory.mktemp("one"))
    done = _one(_rescore(one))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _records(one) != _records(base)  # new scorer settings: every record replaced
    return base, one


def _copy(run_dir: Path, runs: Path) -> Path:
    """A copy of the run in a runs folder of its own (so `evalkit run --runs-dir` finds it too)."""
    return Path(shutil.copytree(run_dir, runs / run_dir.parent.name / run_dir.name))


def _assert_rescored_like(one: Path, two: Path) -> None:
    assert _records(two) == _records(one)
    assert json.loads((two / "summary.json").read_text()) == json.loads((one / "summary.json").read_text())
    assert not list(two.glob("records.rescore-*")) and not list(two.glob("records.rank*.jsonl"))
    assert list(two.glob("records.*.bak.jsonl"))  # the old records are kept aside


@pytest.mark.parametrize("command", ["score", "run"])
def test_two_ranks_rescore_like_one_process(scored, tmp_path, command):
    from fixture_paths import BENCHMARKS

    base, one = scored
    two = _copy(base, tmp_path)
    if command == "score":
        target = _rescore(two)
    else:  # `evalkit run ... --rescore`: every image is there, so the ranks only score
        target = [*_args(BENCHMARKS, tmp_path), "--rescore", *RULES, *ONE_AT_A_TIME]
    done = _torchrun(2, ["-m", "evalkit.cli", *target], _env())
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_rescored_like(one, two)
    assert done.stdout.count("Single Obj.") == 1  # rank 0 prints the table
    history = json.loads((two / "run.json").read_text())["history"]
    assert {(h.get("rank"), h.get("world_size")) for h in history} >= {(0, 2), (1, 2)}


def _break_image(run_dir: Path, sample: str, k: int) -> tuple[Path, bytes]:
    path = run_dir / "samples" / sample / f"{k}.png"
    good = path.read_bytes()
    path.write_bytes(b"not a png")
    return path, good


@pytest.mark.parametrize(("fault", "resume_world"), [("kill", 2), ("corrupt", 1)])
def test_an_interrupted_two_rank_rescore_keeps_the_old_records_and_resumes(
    scored, tmp_path, fault, resume_world
):
    base, one = scored
    two = _copy(base, tmp_path)
    old = {name: (two / name).read_bytes() for name in ("records.jsonl", "summary.json")}
    # rank 1 takes samples 1, 3, ...: it is SIGKILLed on its second image (torchrun then stops rank 0),
    # or the last image of sample 1 cannot be read and it fails there
    if fault == "kill":
        env = _env(EVALKIT_TEST_FAULT="kill", EVALKIT_TEST_FAULT_RANK="1", EVALKIT_TEST_FAULT_AT="score")
        failed = _torchrun(2, [str(WORKER), *_rescore(two)], env)
        first_left = "00001/1"
    else:
        broken, good = _break_image(two, "00001", 3)
        failed = _torchrun(2, ["-m", "evalkit.cli", *_rescore(two)], _env())
        assert "corrupt image" in failed.stderr
        first_left = "00001/3"
    assert failed.returncode != 0
    assert {name: (two / name).read_bytes() for name in old} == old  # the old records stay in force
    staged = {r["id"]: r for path in two.glob("records.rescore-*.rank*.jsonl") for r in read_jsonl(path)}
    assert "00001/0" in staged and first_left not in staged
    if fault == "corrupt":
        broken.write_bytes(good)
    target = _rescore(two)
    done = _torchrun(2, ["-m", "evalkit.cli", *target], _env()) if resume_world == 2 else _one(target)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_rescored_like(one, two)
    committed = {r["id"]: r for r in read_jsonl(two / "records.jsonl")}
    assert all(committed[i] == r for i, r in staged.items())  # staged images were not scored again


def test_independent_shards_are_refused_a_rescore_in_one_line(scored, tmp_path):
    base, _ = scored
    run_dir = _copy(base, tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "", "MASTER_PORT": ""}
    done = _one(_rescore(run_dir), **env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--rescore" in line and "RANK/WORLD_SIZE" in line and "torchrun" in line
    assert sorted(p.name for p in run_dir.iterdir()) == before  # refused before any work

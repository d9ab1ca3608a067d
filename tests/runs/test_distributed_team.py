"""The rank meeting protocol of evalkit.distributed on an in-process store (threads as ranks): run
folders must agree, a failure reaches every rank, rank 0 refuses folders it cannot see, and each node of a
multi-node job keeps its own judge cache."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest
import torch.distributed as dist

from evalkit.distributed import RankFailed, Team, check_shared_folder
from evalkit.errors import EvalkitError


def _ranks(world: int, timeout: float = 30.0) -> list[Team]:
    store = dist.HashStore()
    return [Team(store, r, world, timeout) for r in range(world)]


def _in_threads(teams: list[Team], work) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * len(teams)

    def run(i: int) -> None:
        try:
            work(teams[i])
        except BaseException as e:  # noqa: BLE001 - collected for the assertions
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(teams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_ranks_that_opened_different_run_folders_stop_before_any_work():
    teams = _ranks(2)
    errors = _in_threads(teams, lambda t: t.meet(f"geneval/tiny-sd3-{'aaaa' if t.rank == 0 else 'bbbb'}"))
    assert all(isinstance(e, EvalkitError) and "different data or arguments" in str(e) for e in errors)


def test_a_failure_reaches_a_rank_at_its_next_beat_and_a_waiting_rank_0():
    teams = _ranks(3)
    assert _in_threads(teams, lambda t: t.meet("geneval/x")) == [None] * 3
    teams[2].fail(RuntimeError("CUDA out of memory\nlong traceback text"))
    with pytest.raises(RankFailed, match=r"rank 2 \(.*\) failed: RuntimeError: CUDA out of memory; "):
        teams[1].beat()
    teams[1].done()
    with pytest.raises(RankFailed, match="rank 2"):
        teams[0].wait_all()


def test_rank_0_names_the_rank_that_stopped_beating():
    teams = _ranks(2, timeout=0.5)
    _in_threads(teams, lambda t: t.meet("geneval/x"))
    teams[0].done()
    with pytest.raises(RankFailed, match=r"without progress for rank 1 \(") as info:
        teams[0].wait_all()
    assert "EVALKIT_DIST_TIMEOUT" in str(info.value)


def test_rank_0_refuses_results_it_cannot_see(tmp_path):
    lock = tmp_path / ".lock"
    lock.mkdir()
    me = {"rank": 0, "host": socket.gethostname(), "pid": os.getpid(), "ok": True}
    (lock / "rank0").write_text(
        json.dumps({"pid": os.getpid(), "host": me["host"], "start": "", "purpose": "run"})
    )
    check_shared_folder(tmp_path, [me])
    other = {"rank": 1, "host": "node7", "pid": 4242, "ok": True}  # its lock file is on node7's disk
    with pytest.raises(EvalkitError, match=r"rank 1 \(node7\).*not shared.*--runs-dir"):
        check_shared_folder(tmp_path, [me, other])


def test_each_node_of_a_multi_node_job_has_its_own_judge_cache(tmp_path, monkeypatch):
    from evalkit.stages import judge_cache_path

    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert judge_cache_path(tmp_path).name == "judge_cache.sqlite"  # one node: one shared file
    monkeypatch.setenv("WORLD_SIZE", "16")
    assert judge_cache_path(tmp_path).name == f"judge_cache.{socket.gethostname()}.sqlite"

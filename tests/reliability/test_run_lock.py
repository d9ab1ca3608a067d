"""One writer per shard of a run folder, --rescore alone, and no stale lock after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.runlock import RunBusy
from evalkit.runs import Run, Shard

HOLD = """
import sys, time
from pathlib import Path
from evalkit.runs import Run, Shard
rank, world, exclusive = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
with Run(Path(sys.argv[1])).lock("score", shard=Shard(rank, world), exclusive=exclusive):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold(root: Path, rank: int = 0, world: int = 1, exclusive: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), str(rank), str(world), "1" if exclusive else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_a_second_writer_of_the_same_shard_is_told_who_holds_the_run(tmp_path):
    run = Run(tmp_path / "r")
    holder = _hold(run.root)
    try:
        busy = rf"in use \(pid {holder.pid} on .*score since"
        with pytest.raises(RunBusy, match=busy), run.lock("score"):
            pass
        # --rescore never runs beside a writer
        with pytest.raises(RunBusy, match=str(holder.pid)), run.lock("rescore", exclusive=True):
            pass
    finally:
        _kill(holder)


def test_a_lock_of_a_killed_process_does_not_block(tmp_path):
    run = Run(tmp_path / "r")
    _kill(_hold(run.root, exclusive=True))
    start = time.monotonic()
    with run.lock("score"):
        pass
    with run.lock("rescore", exclusive=True):
        pass
    assert time.monotonic() - start < 5


def test_shards_of_one_run_write_side_by_side_but_not_beside_another_world_size(tmp_path):
    run = Run(tmp_path / "r")
    holder = _hold(run.root, rank=0, world=2)
    try:
        with run.lock("score", shard=Shard(1, 2)):
            pass
        with pytest.raises(RunBusy, match="WORLD_SIZE=3"), run.lock("score", shard=Shard(1, 3)):
            pass
    finally:
        _kill(holder)


def test_an_exclusive_holder_keeps_writers_out(tmp_path):
    run = Run(tmp_path / "r")
    holder = _hold(run.root, exclusive=True)
    try:
        with pytest.raises(RunBusy, match=str(holder.pid)), run.lock("score", shard=Shard(0, 2)):
            pass
    finally:
        _kill(holder)
    with run.lock("score"):
        pass


def test_the_ranks_of_a_rescore_share_the_run_and_keep_every_other_writer_out(tmp_path):
    run = Run(tmp_path / "r")
    rank0 = _hold(run.root, rank=0, world=2, exclusive=True)  # rank 0 of a torchrun rescore
    try:
        with run.lock("rescore", shard=Shard(1, 2), exclusive=True):  # its rank 1 stages beside it
            pass
        outsiders = [
            ("score", Shard(), False),  # a plain writer
            ("score", Shard(1, 2), False),  # a shard of a plain sharded run of the same size
            ("rescore", Shard(), True),  # a one-process rescore or merge
            ("rescore", Shard(0, 2), True),  # a second job's rank 0
        ]
        for purpose, shard, exclusive in outsiders:
            with (
                pytest.raises(RunBusy, match=str(rank0.pid)),
                run.lock(purpose, shard=shard, exclusive=exclusive),
            ):
                pass
        with (
            pytest.raises(RunBusy, match="WORLD_SIZE=3"),
            run.lock("rescore", shard=Shard(1, 3), exclusive=True),
        ):
            pass
    finally:
        _kill(rank0)
    with run.lock("score"):
        pass


@pytest.mark.parametrize("held", [(1, 2, False), (0, 1, True)], ids=["beside a writer", "beside a rescore"])
def test_a_rescore_rank_is_refused_beside_a_writer_or_a_one_process_rescore(tmp_path, held):
    run = Run(tmp_path / "r")
    holder = _hold(run.root, *held)
    try:
        with (
            pytest.raises(RunBusy, match=str(holder.pid)),
            run.lock("rescore", shard=Shard(0, 2), exclusive=True),
        ):
            pass
    finally:
        _kill(holder)
    with run.lock("rescore", shard=Shard(0, 2), exclusive=True):
        pass

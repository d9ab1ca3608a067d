"""Evaluation by processes started together (torchrun, accelerate launch, srun with MASTER_ADDR set):
each rank evaluates its shard, then rank 0 merges the records and writes the summary; no merge step.

The ranks meet through torch.distributed's key-value store (torchrun's agent store, else one rank 0
hosts at MASTER_ADDR:MASTER_PORT). There is no process group and no collective, so nothing waits inside
NCCL and the same code runs on CPU and GPU nodes. What the ranks tell each other:

* join: the run folder each rank opened; folders that differ (other data or arguments on one node)
  stop every rank before any work.
* beats: a counter bumped after every batch; it is how a waiting rank tells slow from stuck.
* failed: the first error of any rank; every other rank stops at its next beat or wait with one line
  naming that rank and host (finished images and records stay on disk).
* status / merged / acks: done; rank 0 waits for every rank, checks it sees their files (a runs
  folder shared by every node), merges, and tells the others, who read the summary from disk.

A rank that dies without a word (kill -9, out of memory) is usually ended with the job by the launcher;
otherwise no beat for EVALKIT_DIST_TIMEOUT seconds (default 1800) stops the waiting ranks, naming the
ranks they wait for. Everything is resumable, so the same command continues a stopped job.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

TIMEOUT_ENV = "EVALKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0  # seconds without a beat from anyone: far above one batch or one model load
RESUME = "finished images and records are kept: re-run the same command to resume"

_store: Any = None  # one connection per process (rank 0 may host the store: it cannot bind twice)
_calls = itertools.count()  # every rank makes the same evaluate() calls in the same order


class RankFailed(EvalkitError):
    """Another rank of the job failed or stopped making progress."""

    exit_code = 1


def launched_together(env: dict[str, str] | None = None) -> bool:
    """Several processes started by one launcher: WORLD_SIZE > 1 and a rendezvous address.

    RANK/WORLD_SIZE alone are independent shards (run one by one, then `evalkit merge`).
    """
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1").strip() or 1)
    except ValueError:
        return False  # Shard.from_env reports it
    return world > 1 and bool(env.get("MASTER_ADDR")) and bool(env.get("MASTER_PORT"))


def stall_timeout() -> float:
    """Seconds without progress after which waiting ranks give up (EVALKIT_DIST_TIMEOUT)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise EvalkitError(f"${TIMEOUT_ENV}={text!r} must be a positive number of seconds")
    return value


def _connect(timeout: float):
    """The job's store: the caller's process group's, else torchrun's agent store or rank 0's (env://)."""
    global _store
    if _store is not None:
        return _store
    from datetime import timedelta

    import torch.distributed as dist

    try:
        if dist.is_initialized():
            from torch.distributed import distributed_c10d

            _store = distributed_c10d._get_default_store()
        else:
            _store, _, _ = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout)))
    except (RuntimeError, ValueError) as e:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise EvalkitError(f"cannot reach the job's rendezvous at {where} ({_first_line(e)})") from None
    return _store


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line[:300] or type(error).__name__


def describe(error: BaseException) -> str:
    """One line for another rank to print: the message of a user error, else type and message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, EvalkitError):
        return _first_line(error)
    return f"{type(error).__name__}: {_first_line(error)}"


class Team:
    """This process's place in a job of `world_size` ranks meeting through `store`."""

    def __init__(self, store, rank: int, world_size: int, timeout: float):
        self.store, self.rank, self.world_size, self.timeout = store, rank, world_size, timeout
        self.host = socket.gethostname()
        self.joined: dict[int, dict[str, Any]] = {}

    @classmethod
    def connect(cls, rank: int, world_size: int) -> Team:
        """Reach the job's store (first thing in a call, so an early error still reaches every rank)."""
        import torch.distributed as dist

        timeout = stall_timeout()
        job = os.environ.get("TORCHELASTIC_RUN_ID", "job")
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        prefix = f"evalkit/{job}/{attempt}/{next(_calls)}/"
        return cls(dist.PrefixStore(prefix, _connect(timeout)), rank, world_size, timeout)

    # -- store access ----------------------------------------------------------------------------------
    def _op(self, method: str, *args):
        try:
            return getattr(self.store, method)(*args)
        except (RuntimeError, ValueError) as e:
            raise RankFailed(
                f"rank {self.rank} lost the job's rendezvous store ({_first_line(e)}): rank 0 or the "
                f"launcher stopped; {RESUME}"
            ) from None

    def _get(self, key: str) -> dict[str, Any]:
        return json.loads(self._op("get", key))

    def _count(self, key: str) -> int:
        return int(self._op("add", key, 0))

    def _has(self, key: str) -> bool:
        return bool(self._op("check", [key]))

    # -- protocol --------------------------------------------------------------------------------------
    def meet(self, run_name: str) -> None:
        """Wait for every rank; refuse a job whose ranks opened different run folders."""
        me = {"rank": self.rank, "host": self.host, "pid": os.getpid(), "run": run_name}
        self._op("set", f"join/{self.rank}", json.dumps(me))
        self._op("add", "joined", 1)
        self._wait(lambda: self._count("joined") >= self.world_size, "join/", "to join")
        self.joined = {r: self._get(f"join/{r}") for r in range(self.world_size)}
        for r, info in self.joined.items():
            if info["run"] != run_name:
                raise EvalkitError(
                    f"rank {r} ({info['host']}) opened {info['run']} but rank {self.rank} ({self.host}) "
                    f"opened {run_name}: the ranks see different data or arguments; give every rank the "
                    "same command and --data-dir"
                )

    def beat(self) -> None:
        """Progress (after every batch); stops this rank when another one has failed."""
        self._op("add", "beats", 1)
        self._raise_if_failed()

    def fail(self, error: BaseException) -> None:
        """Tell the other ranks this one stopped (best effort: the original error is what matters)."""
        message = {"rank": self.rank, "host": self.host, "error": describe(error)}
        try:
            self.store.compare_set("failed", "", json.dumps(message))  # the first failure wins
            self.store.set(f"status/{self.rank}", json.dumps({**message, "ok": False}))
            self.store.add("finished", 1)
        except Exception:  # noqa: BLE001 - the store may be gone; never hide the real error
            pass

    def done(self) -> None:
        """This rank's shard is finished and its run-folder lock released."""
        status = {"rank": self.rank, "host": self.host, "pid": os.getpid(), "ok": True}
        self._op("set", f"status/{self.rank}", json.dumps(status))
        self._op("add", "finished", 1)

    def wait_all(self) -> list[dict[str, Any]]:
        """Rank 0: every rank's status, once all are done (RankFailed if one failed)."""
        self._wait(lambda: self._count("finished") >= self.world_size, "status/", "to finish")
        self._raise_if_failed()
        return [self._get(f"status/{r}") for r in range(self.world_size)]

    def publish_merged(self) -> None:
        """Rank 0: the records are merged and the summary written; wait until every rank has read that,
        so a store hosted by rank 0 outlives their last look at it."""
        self._op("set", "merged", json.dumps({"ok": True}))
        self._wait(lambda: self._count("acks") >= self.world_size - 1, "ack/", "to see the merge")

    def wait_merged(self) -> None:
        """Ranks > 0: wait for rank 0's merge."""
        self._wait(lambda: self._has("merged"), None, "to merge (rank 0)")
        self._op("set", f"ack/{self.rank}", "1")
        self._op("add", "acks", 1)

    def _raise_if_failed(self) -> None:
        if not self._has("failed"):
            return
        failed = self._get("failed")
        if failed["rank"] != self.rank:
            raise RankFailed(f"rank {failed['rank']} ({failed['host']}) failed: {failed['error']}; {RESUME}")

    def _wait(self, ready: Callable[[], bool], per_rank: str | None, what: str) -> None:
        """Poll until ready(); a posted failure raises at once, no beat from anyone for `timeout` s too."""
        last, since, pause = None, time.monotonic(), 0.02
        while not ready():
            self._raise_if_failed()
            beats, now = self._count("beats"), time.monotonic()
            if beats != last:
                last, since = beats, now
            elif now - since > self.timeout:
                raise RankFailed(self._stalled(per_rank, now - since, what))
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        self._raise_if_failed()

    def _stalled(self, per_rank: str | None, seconds: float, what: str) -> str:
        if per_rank is None:
            late = [0]
        else:
            late = [r for r in range(self.world_size) if r != self.rank and not self._has(f"{per_rank}{r}")]
        hosts = ", ".join(f"rank {r} ({self.joined.get(r, {}).get('host', 'not joined')})" for r in late)
        return (
            f"waited {seconds:.0f} s without progress for {hosts or 'the other ranks'} {what} (stuck or "
            f"killed; ${TIMEOUT_ENV} sets the limit); stop the job: {RESUME}"
        )


@contextlib.contextmanager
def reporting(team: Team | None) -> Iterator[None]:
    """Any error inside is posted to the other ranks before it propagates (nothing without a team)."""
    try:
        yield
    except BaseException as error:
        if team is not None:
            team.fail(error)
        raise


def check_shared_folder(run_root: Path, statuses: list[dict[str, Any]]) -> None:
    """Rank 0 sees each rank's lock file as that rank wrote it, or the ranks wrote to different folders
    (a node-local --runs-dir): merging would silently leave their records out."""
    from evalkit.runlock import LOCK_DIR, _read_holder

    for status in statuses:
        holder = _read_holder(Path(run_root) / LOCK_DIR / f"rank{status['rank']}")
        if holder is None or (holder.pid, holder.host) != (status["pid"], status["host"]):
            raise EvalkitError(
                f"rank {status['rank']} ({status['host']}) wrote its results where rank 0 cannot see them "
                f"({run_root} is not shared): pass a --runs-dir on a file system every node mounts"
            )


def finish(team: Team, run, merge: Callable[[], Any]) -> Any:
    """After this rank's work (its lock released, or, in a team rescore, the team lock its ranks share
    still held): rank 0 waits for all, checks, runs `merge` and returns its result; the other ranks
    wait for that and return None."""
    if team.rank != 0:
        team.done()
        team.wait_merged()
        return None
    team.done()
    statuses = team.wait_all()
    check_shared_folder(run.root, statuses)
    hosts = sorted({s["host"] for s in statuses})
    run.write_info({"distributed": {"world_size": team.world_size, "hosts": hosts}})
    result = merge()  # an error here reaches the other ranks through `reporting`
    team.publish_merged()
    return result

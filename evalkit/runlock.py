"""One writer per run folder (per shard); `--rescore`/`merge` alone (or a rescore's ranks together); no
lock a killed process can leave behind.

Locks are `flock`s on files under `<run>/.lock/`, so the kernel drops them when the holder dies, even on
kill -9: a stale lock cannot block anyone. Each lock file also says who took it (pid, host, start time,
what for), which is what a refused second process prints; a holder file whose flock is gone is stale and
is ignored (and reported as such when its pid is no longer alive on this host).

* A writer (gen/score/run of shard r of w) holds `folder` shared and `rank<r>` exclusively: shards of one
  sharded run work side by side, a second process for the same shard exits 2 naming the holder, and a
  writer with another world size (whose shard would overlap) is refused too.
* An exclusive user (`--rescore` in one process, merging shards) holds `folder` and `team` exclusively:
  nobody writes beside it.
* The ranks of a team rescore (`--rescore` under torchrun) hold `team` shared and `rank<r>` exclusively:
  they stage side by side, while plain writers (who hold `folder`), an exclusive user and a team of
  another world size are kept out, and they out of it.

Whether `folder` or `team` is free is probed and the lock taken under `gate`, a lock held for the
moment of that check only, so a writer and a rescoring rank starting at the same instant cannot both
see the other's lock free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from evalkit.errors import EvalkitError

LOCK_DIR = ".lock"


class RunBusy(EvalkitError):
    """Another live process holds the run folder."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    start: str
    purpose: str
    rank: int = 0
    world_size: int = 1

    @classmethod
    def me(cls, purpose: str, rank: int = 0, world_size: int = 1) -> Holder:
        return cls(
            os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), purpose, rank, world_size
        )

    def describe(self) -> str:
        alive = pid_alive(self.pid) if self.host == socket.gethostname() else None
        state = "" if alive is not False else ", pid no longer alive: a child process still holds the lock"
        return f"pid {self.pid} on {self.host}, {self.purpose} since {self.start}{state}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


class _FileLock:
    """A non-blocking flock on one file, with the holder's description written into it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, exclusive: bool) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as e:
            os.close(fd)
            raise EvalkitError(
                f"{self.path}: the file system does not support locks ({e.strerror}); "
                "use a --runs-dir on a local disk"
            ) from None
        self.fd = fd
        return True

    def write(self, holder: Holder) -> None:
        assert self.fd is not None
        data = json.dumps(asdict(holder)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _held_by_others(folder: Path, mine: set[Path]) -> list[tuple[Path, Holder | None]]:
    """The lock files under `folder` that a live process holds (probed with a non-blocking flock)."""
    held = []
    for path in sorted(folder.glob("rank*")) + [folder / "exclusive"]:
        if path in mine or not path.exists():
            continue
        probe = _FileLock(path)
        if probe.acquire(exclusive=True):
            probe.release()  # nobody holds it: a stale file from a finished or killed process
            continue
        held.append((path, _read_holder(path)))
    return held


def _busy(root: Path, holders: list[Holder | None], wanted: str) -> RunBusy:
    who = "; ".join(h.describe() for h in holders if h is not None) or "another process"
    return RunBusy(
        f"{root} is in use ({who}); wait for it to finish or stop it before {wanted} "
        "(a lock of a killed process is released automatically)"
    )


GATE_WAIT = 30.0  # seconds: the gate is held only while a lock is checked and taken


@contextlib.contextmanager
def _gate(folder: Path) -> Iterator[None]:
    """Serialise check-then-take between processes (polled, so a stopped holder cannot hang us)."""
    gate = _FileLock(folder / "gate")
    deadline = time.monotonic() + GATE_WAIT
    while not gate.acquire(exclusive=True):
        if time.monotonic() > deadline:
            raise RunBusy(f"{folder / 'gate'} stayed locked for {GATE_WAIT:.0f} s; is a process stopped?")
        time.sleep(0.01)
    try:
        yield
    finally:
        gate.release()


def _free(path: Path) -> bool:
    """Nobody holds a lock on `path` (probed with a non-blocking exclusive flock, released at once)."""
    probe = _FileLock(path)
    if not probe.acquire(exclusive=True):
        return False
    probe.release()
    return True


def _take_base(folder: Path, exclusive: bool, world_size: int) -> list[_FileLock] | None:
    """The folder-wide locks of a writer, an exclusive user or a team rescore rank; None when taken."""
    base, team = _FileLock(folder / "folder"), _FileLock(folder / "team")
    with _gate(folder):
        if not exclusive:  # a writer: no team rescore, and `folder` shared
            return [base] if _free(team.path) and base.acquire(exclusive=False) else None
        if world_size == 1:  # alone: nobody at all
            if not base.acquire(exclusive=True):
                return None
            if team.acquire(exclusive=True):
                return [base, team]
            base.release()
            return None
        # a team rescore rank: no writer or exclusive user, and `team` shared with the other ranks
        return [team] if _free(base.path) and team.acquire(exclusive=False) else None


def _acquire_own(lock: _FileLock, tries: int = 20) -> bool:
    """A rank's own lock; a few quick retries, since a rank starting beside us probes it for a moment
    (`_held_by_others`), while a real holder keeps it for the whole run."""
    for _ in range(tries):
        if lock.acquire(exclusive=True):
            return True
        time.sleep(0.01)
    return False


@contextlib.contextmanager
def lock_run(
    root: Path, purpose: str, *, exclusive: bool = False, rank: int = 0, world_size: int = 1
) -> Iterator[Holder]:
    """Hold the run folder for writing shard `rank` of `world_size`, or alone (`exclusive`); exclusive
    with `world_size` > 1 is one rank of a team that holds the folder together (a torchrun rescore).

    Raises RunBusy (exit 2, naming the holder) instead of waiting.
    """
    folder = Path(root) / LOCK_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvalkitError(f"cannot create {folder} ({e.strerror}); check --runs-dir is writable") from None
    me = Holder.me(purpose, rank, world_size)
    bases = _take_base(folder, exclusive, world_size)
    if bases is None:
        held = _held_by_others(folder, set())
        raise _busy(Path(root), [h for _, h in held], purpose)
    own: _FileLock | None = None
    try:
        if exclusive and world_size == 1:
            own = _FileLock(folder / "exclusive")
            own.acquire(exclusive=True)  # always free while `folder` is held exclusively
        else:
            own = _FileLock(folder / f"rank{rank}")
            if not _acquire_own(own):
                raise _busy(Path(root), [_read_holder(own.path)], purpose)
            own.write(me)
            others = [h for _, h in _held_by_others(folder, {own.path})]
            # A holder that has not written its file yet is a shard starting beside us: no clash.
            clash = [h for h in others if h is not None and h.world_size != world_size]
            if clash:
                raise _busy(Path(root), clash, f"{purpose} with WORLD_SIZE={world_size}")
        own.write(me)
        yield me
    finally:
        if own is not None:
            own.release()
        for lock in reversed(bases):
            lock.release()

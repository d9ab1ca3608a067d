"""Kill -9 and fault-injection drills shared by tests/reliability/ (short) and bench/reliability.py (long).

A drill runs `evalkit run ...` in a subprocess, kills it with SIGKILL after a random delay (any point:
model loading, drawing, an image write, a record append), repeats, then lets it finish, and compares the
run folder with an uninterrupted reference run: the same records (scores, reasons), the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VOLATILE = ("time",)  # record fields that legitimately differ between two runs


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> int:
    """`python -m evalkit.cli ARGS` to completion; returns the exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        timeout=timeout,
    )
    return done.returncode


def kill_after(args: list[str], delay: float, env: dict[str, str] | None = None) -> bool:
    """Start `evalkit ARGS`, SIGKILL it after `delay` seconds; True if it was still running (killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalkit.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def state(run_dir: Path) -> dict[str, Any]:
    """What must not depend on interruptions: current records (minus timestamps) and image bytes."""
    from evalkit.runs import Run

    records = {r["id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in Run(run_dir).records()}
    images = {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run_dir / "samples").rglob("*.png"))
    }
    summary_path = run_dir / "summary.json"
    table = json.loads(summary_path.read_text()).get("table") if summary_path.exists() else None
    return {"records": records, "images": images, "table": table}


@dataclass
class DrillResult:
    cycles: int = 0
    attempts: int = 0  # kill attempts; a process that finished before its delay is not counted as killed
    kills: int = 0
    identical: int = 0
    lost: int = 0
    torn_lines_seen: int = 0
    seconds: float = 0.0
    differences: list[str] = field(default_factory=list)


def kill_drill(
    args_for: Any, reference_dir: Path, workdir: Path, *, cycles: int, kills_per_cycle: int,
    max_delay: float, seed: int = 0, budget_s: float = 600.0,
) -> DrillResult:  # fmt: skip
    """`cycles` times: a fresh runs dir, up to `kills_per_cycle` SIGKILLs at random delays, then a run to
    the end, compared with the reference. `args_for(runs_dir)` gives the CLI arguments."""
    rng = random.Random(seed)
    result = DrillResult()
    reference = state(reference_dir)
    start = time.monotonic()
    for cycle in range(cycles):
        if time.monotonic() - start > budget_s:
            break
        runs = workdir / f"cycle{cycle}"
        args = args_for(runs)
        for _ in range(kills_per_cycle):
            result.attempts += 1
            if kill_after(args, rng.uniform(0.5, max_delay)):
                result.kills += 1
                for path in runs.rglob("records*.jsonl"):
                    data = path.read_bytes()
                    result.torn_lines_seen += bool(data) and not data.endswith(b"\n")
        code = run_cli(args)
        result.cycles += 1
        (run_dir,) = [p for p in runs.glob("*/*") if (p / "run.json").exists()]
        final = state(run_dir) if code == 0 else {"records": {}, "images": {}, "table": None}
        lost = set(reference["records"]) - set(final["records"])
        result.lost += len(lost)
        if final == reference:
            result.identical += 1
        else:
            diff = [k for k in ("records", "images", "table") if final[k] != reference[k]]
            result.differences.append(f"cycle {cycle}: exit {code}, differs in {diff}")
    result.seconds = time.monotonic() - start
    return result

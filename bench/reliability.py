"""Reliability drill (issue 14), the long version of tests/reliability/: prints kills, identical runs,
injected judge faults and lost records, measured in one run.

    python bench/reliability.py --cycles 5 --kills 3 --fault-rounds 3

1. kill -9: `evalkit run geneval -m tiny-sd3 --detector tiny` in a subprocess, SIGKILLed at random delays
   `--kills` times per cycle, then run to the end; the folder must equal an uninterrupted reference run
   (records minus timestamps, image bytes, table).
2. faults: `evalkit run wise` with a scripted judge behind a proxy that injects a fault into 30% of
   requests (5xx, hangs, garbage, empty choices, empty content); then the judge is healthy again and a
   plain re-run must ask for exactly the failed images and leave none failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from evalkit.testing.reliability import kill_drill, run_cli

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
GOOD = "Consistency: 2\nRealism: 1\nAesthetic Quality: 1"


class _ScriptedJudgeModel:
    """What JudgeServer needs from a judge model: a fixed, parseable WISE reply."""

    name = "scripted-judge"

    def generate(self, messages, **decoding):
        from types import SimpleNamespace

        return SimpleNamespace(text=GOOD, finish_reason="stop", tokens=[], prompt_tokens=1)


def kills(args, work: Path) -> None:
    def cli_args(runs: Path) -> list[str]:
        return ["run", "geneval", "-m", "tiny-sd3", "--detector", "tiny", "--limit", str(args.limit),
                "--batch-size", "1", "--data-dir", str(BENCHMARKS), "--runs-dir", str(runs)]  # fmt: skip

    start = time.monotonic()
    assert run_cli(cli_args(work / "reference")) == 0, "reference run failed"
    reference_s = time.monotonic() - start
    (reference,) = (work / "reference").glob("*/*")
    result = kill_drill(
        cli_args, reference, work / "drill", cycles=args.cycles, kills_per_cycle=args.kills,
        max_delay=0.6 * reference_s, seed=args.seed, budget_s=args.budget,
    )  # fmt: skip
    print(f"kill -9 drill: {result.cycles} cycles, {result.kills} kills of {result.attempts} attempts (random "
          f"delay up to {0.6 * reference_s:.0f}s = 0.6 x the reference run), {result.torn_lines_seen} torn "
          f"record lines found after kills")  # fmt: skip
    print(f"  identical runs: {result.identical}/{result.cycles}; lost records: {result.lost}; "
          f"{result.seconds:.0f}s")  # fmt: skip
    for line in result.differences:
        print("  ", line)


def faults(args, work: Path) -> None:
    from evalkit.judges.faultproxy import FaultProxy
    from evalkit.judges.server import JudgeServer
    from evalkit.runs import Run

    totals = {"injected": 0, "failed_first": 0, "reasked": 0, "failed_after": 0, "lost": 0, "planned": 0}
    for round_ in range(args.fault_rounds):
        runs = work / f"faults{round_}"
        server = JudgeServer(_ScriptedJudgeModel())
        with server, FaultProxy(server.url, rate=args.rate, seed=round_, hang_s=3.0) as proxy:
            cli_args = ["run", "wise", "-m", "tiny-sd3", "--limit", str(args.wise_limit), "--data-dir",
                        str(BENCHMARKS), "--runs-dir", str(runs), "--judge", "openai:scripted-judge",
                        "--judge-url", proxy.url, "--judge-option", "max_retries=0",
                        "--judge-option", "timeout=1.0", "--judge-option", "concurrency=1"]  # fmt: skip
            assert run_cli(cli_args) == 0, "faulty run failed"
            (run_dir,) = (runs / "wise@legacy").iterdir()
            first = Run(run_dir).records()
            proxy.rate = 0.0
            before = server.requests
            assert run_cli(cli_args) == 0, "healthy re-run failed"
            after = Run(run_dir).records()
            totals["injected"] += sum(proxy.injected.values())
            totals["failed_first"] += sum(r["failed"] for r in first)
            totals["reasked"] += server.requests - before
            totals["failed_after"] += sum(r["failed"] for r in after)
            totals["lost"] += args.wise_limit - len(after)
            totals["planned"] += args.wise_limit
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["n_failed"] == 0
    print(f"fault drill: {args.fault_rounds} rounds x {args.wise_limit} WISE images, {args.rate:.0%} of judge "
          f"requests faulted: {totals['injected']} faults injected -> {totals['failed_first']} failed records "
          f"(never scored)")  # fmt: skip
    print(f"  healthy re-run: {totals['reasked']} requests for {totals['failed_first']} failures "
          f"(ratio {totals['reasked'] / max(1, totals['failed_first']):.2f}); failed after: "
          f"{totals['failed_after']}; lost: {totals['lost']}/{totals['planned']}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per cycle before the final run")
    parser.add_argument("--limit", type=int, default=1, help="GenEval prompts per run (4 images each)")
    parser.add_argument("--fault-rounds", type=int, default=3)
    parser.add_argument("--wise-limit", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds for the kill drill")
    args = parser.parse_args()
    if not (BENCHMARKS / "geneval").is_dir() or not (BENCHMARKS / "wise").is_dir():
        print(f"benchmark data not found under {BENCHMARKS}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        kills(args, Path(tmp))
        faults(args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Seconds to score a judged benchmark through the HTTP judge: concurrent requests vs one at a time.

    python bench/judge_http_concurrency.py                       # WISE, 64 images, 0.25 s per request
    python bench/judge_http_concurrency.py --images 128 --latency 0.5 --concurrency 32

One run of `evalkit.evaluate("wise", ...)` makes the images (noise from a stand-in generator: only the
scoring is timed), then the score stage runs twice on copies of that run folder, each with its own empty
judge cache, against the project's local OpenAI-compatible server (`evalkit.judges.server`) with a scripted
judge model (`evalkit.testing.served`) behind it: `--judge-option concurrency=1` (one request at a time, as
a plain loop over samples would send them) and `concurrency=N` (the adaptive window up to N, several
samples scored at once). The server spends `--latency` seconds on every request, concurrently, standing in
for a vLLM/SGLang server's time per request; `--capacity K` makes it answer 429 above K requests in
flight. The records of both runs must be identical (times aside, and the scorer hash, which includes the
judge options given, concurrency among them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from suite_results import emit

import evalkit
from evalkit.generators.base import Generation, Generator
from evalkit.judges.server import JudgeServer
from evalkit.runs import Run
from evalkit.testing.served import ScriptedJudgeModel

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
WISE_REPLY = "Consistency: 2\nRealism: 1\nAesthetic Quality: 1"


class NoiseGenerator(Generator):
    """Images without a model: the bench times scoring only."""

    name = "noise"

    def generate(self, requests):
        return [
            Generation(Image.fromarray(np.random.default_rng(r.seed).integers(0, 256, (64, 64, 3), np.uint8)))
            for r in requests
        ]


def score(run_dir: Path, args, url: str, concurrency: int) -> float:
    start = time.perf_counter()
    evalkit.evaluate(
        "wise", "tiny-sd3", limit=args.images, generator=NoiseGenerator(), runs_dir=run_dir, data_dir=args.data_dir,
        judge="openai:scripted-judge", judge_url=url, judge_options={"concurrency": concurrency, "backoff": 0.05},
        stages=("score", "summarize"), show_progress=False, batch_size=4,
    )  # fmt: skip
    return time.perf_counter() - start


def records(run_dir: Path) -> list[dict]:
    (folder,) = (run_dir / "wise@legacy").iterdir()
    return sorted(
        ({k: v for k, v in r.items() if k not in ("time", "scorer_hash")} for r in Run(folder).records()),
        key=lambda r: r["id"],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, default=32, help="the judge's maximum window")
    parser.add_argument("--capacity", type=int, default=None, help="server answers 429 above this many")
    parser.add_argument("--data-dir", type=Path, default=BENCHMARKS)
    parser.add_argument("--json", default=None, help="append the measurement to this JSONL file")
    args = parser.parse_args()
    if not (args.data_dir / "wise").is_dir():
        print(f"WISE data not found under {args.data_dir}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        evalkit.evaluate(
            "wise", "tiny-sd3", limit=args.images, generator=NoiseGenerator(), runs_dir=base,
            data_dir=args.data_dir, stages=("generate",), show_progress=False,
        )  # fmt: skip
        timings, served = {}, {}
        for concurrency in (1, args.concurrency):
            run_dir = Path(tmp) / f"c{concurrency}"
            shutil.copytree(base, run_dir)
            model = ScriptedJudgeModel("scripted-judge", chat_reply=WISE_REPLY)
            with JudgeServer(model, latency=args.latency, max_concurrent=args.capacity) as server:
                timings[concurrency] = score(run_dir, args, server.url, concurrency)
                served[concurrency] = (server.requests, server.rejected, server.peak_in_flight)
        same = records(Path(tmp) / "c1") == records(Path(tmp) / f"c{args.concurrency}")
        failed = sum(r["failed"] for r in records(Path(tmp) / f"c{args.concurrency}"))
    ratio = timings[1] / timings[args.concurrency]
    print(f"WISE scoring, {args.images} images, server latency {args.latency:g} s/request, "
          f"capacity {args.capacity or 'unlimited'}")  # fmt: skip
    print(f"{'judge concurrency':<20} {'seconds':>8} {'images/s':>9} {'requests':>9} {'429s':>5} {'peak':>5}")
    for concurrency, seconds in timings.items():
        requests, rejected, peak = served[concurrency]
        print(
            f"{concurrency:<20} {seconds:>8.2f} {args.images / seconds:>9.1f} {requests:>9} {rejected:>5} {peak:>5}"
        )
    print(f"ratio sequential/concurrent: {ratio:.2f}x; records identical: {same}; failed records: {failed}")
    emit(
        args.json, bench="judge_http_concurrency", config=f"wise n={args.images} latency={args.latency:g}",
        device="cpu", ratio=ratio, ratio_of="one request at a time / concurrent",
        images_per_s=args.images / timings[args.concurrency], peak_mem_gb=None, identical=same,
    )  # fmt: skip
    return 0 if same and failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

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

    python bench/judge_http_concurrency.py --rewards --images 24 --latency 0.25    # VIEScore, UnifiedReward

`--rewards` times the VIEScore and UnifiedReward training rewards instead (no benchmark data needed): one
GRPO group of `--images` noise images scored once one image at a time (`workers=1`, the old loop) and once
as a batch (the default: the batch's images in flight together, up to the judge's window), each on a fresh
server whose scripted model answers with scores drawn from the image (`evalkit.testing.served.scored_reply`).
Rewards (in order) and failure lists must be identical.
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
from evalkit.testing.served import ScriptedJudgeModel, scored_reply

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


def score_rewards(args) -> int:
    """The `--rewards` mode: each reward one image at a time vs the batch at once; 1 if anything differs."""
    from evalkit.judges.openai_http import OpenAIJudge
    from evalkit.rewards.factory import build_reward

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)) for _ in range(args.images)]
    prompts = [f"a photo of object {i}" for i in range(args.images)]
    print(f"GRPO group of {args.images} images, server latency {args.latency:g} s/request, "
          f"judge window up to {args.concurrency}")  # fmt: skip
    print(
        f"{'reward':<14} {'one at a time s':>16} {'batch s':>8} {'ratio':>7} {'requests':>9} {'peak':>7}  identical"
    )
    ok = True
    for name in ("viescore", "unifiedreward"):
        seconds, out, served = {}, {}, {}
        for mode, workers in (("one", 1), ("batch", None)):
            model = ScriptedJudgeModel("scripted-judge", chat_reply=scored_reply)
            with JudgeServer(model, latency=args.latency, max_concurrent=args.capacity) as server:
                judge = OpenAIJudge(
                    server.model_name, base_url=server.url, concurrency=args.concurrency, backoff=0.05
                )
                reward = build_reward(name, {"workers": workers}, judge=judge)
                start = time.perf_counter()
                values = reward.score(images, prompts, [{} for _ in images])
                seconds[mode] = time.perf_counter() - start
                out[mode] = (values, list(reward.failures))
                served[mode] = (server.requests, server.peak_in_flight)
                judge.close()
        same = out["one"] == out["batch"] and None not in out["batch"][0]
        ok = ok and same
        ratio = seconds["one"] / seconds["batch"]
        (requests, peak_one), (_, peak) = served["one"], served["batch"]
        print(f"{name:<14} {seconds['one']:>16.2f} {seconds['batch']:>8.2f} {ratio:>6.2f}x {requests:>9} "
              f"{peak_one:>3}/{peak:<3}  {same}")  # fmt: skip
        emit(
            args.json, bench="reward_http_concurrency", config=f"{name} n={args.images} latency={args.latency:g}",
            device="cpu", ratio=ratio, ratio_of="one image at a time / batch concurrently",
            images_per_s=args.images / seconds["batch"], peak_mem_gb=None, identical=same,
        )  # fmt: skip
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per request")
    parser.add_argument("--concurrency", type=int, default=32, help="the judge's maximum window")
    parser.add_argument("--capacity", type=int, default=None, help="server answers 429 above this many")
    parser.add_argument("--data-dir", type=Path, default=BENCHMARKS)
    parser.add_argument("--json", default=None, help="append the measurement to this JSONL file")
    parser.add_argument("--rewards", action="store_true", help="VIEScore and UnifiedReward rewards instead")
    args = parser.parse_args()
    if args.rewards:
        return score_rewards(args)
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

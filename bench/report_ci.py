"""Seconds to build a GenEval-sized report table (553 prompts x 4 images per run) with and without --ci.

    python bench/report_ci.py                 # 3 runs, 1000 resamples
    python bench/report_ci.py --runs 5 --resamples 2000

Synthetic records in the pipeline's format (tags spread over GenEval's six tasks) go into temporary run
folders; the table is built and rendered as `evalkit report` does: plain, with bootstrap intervals, and
with intervals plus paired p-values against a baseline (the paired tests reuse the intervals' replicates).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from evalkit.benchmarks.geneval.rules import TAGS
from evalkit.report.stats import official_aggregate
from evalkit.report.tables import build_table, render


def make_run(root: Path, name: str, p: float, prompts: int, seed: int) -> Path:
    rng = random.Random(seed)
    info = {
        "benchmark": "geneval",
        "protocol": "geneval",
        "model": name,
        "generation": {"model": name, "seed": seed, "options": {}, "images_per_sample": 4},
    }
    records = []
    tags = sorted(TAGS)
    for i in range(prompts):
        tag = tags[i % len(tags)]
        meta = {"tag": tag, "prompt": f"prompt {i}", "include": [{"class": "dog", "count": 1}]}
        for k in range(4):
            records.append(
                {
                    "id": f"{i:05d}/{k}",
                    "sample_id": f"{i:05d}",
                    "k": k,
                    "tag": tag,
                    "metadata": meta,
                    "correct": rng.random() < p,
                    "protocol": "geneval",
                    "scorer_hash": "x",
                }
            )
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(info))
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {
        "benchmark": "geneval",
        "protocol": "geneval",
        "table": dict(official_aggregate(info)(records)),
        "n_planned": len(records),
        "n_records": len(records),
        "n_scored": len(records),
        "n_protocol_images": len(records),
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def timed(fn) -> float:
    """CPU seconds of this process (wall time on a shared machine measures the neighbours too)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=553)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [make_run(Path(tmp), f"model{i}", 0.5 + 0.05 * i, args.prompts, i) for i in range(args.runs)]
        plain = timed(lambda: render(build_table(runs), "latex"))
        ci = timed(lambda: render(build_table(runs, ci=True, resamples=args.resamples), "latex"))
        paired = timed(
            lambda: render(build_table(runs, baseline=runs[0], ci=True, resamples=args.resamples), "latex")
        )
    images = args.prompts * 4
    print(
        f"{args.runs} runs x {args.prompts} prompts x 4 images ({images} records each), {args.resamples} resamples"
    )
    print(f"plain table            {plain * 1000:7.1f} ms CPU")
    print(f"--ci                   {ci:7.2f} s CPU  ({ci / args.runs:.2f} s per run)")
    print(
        f"--ci --baseline        {paired:7.2f} s CPU  ({paired / ci:.2f}x --ci: paired tests reuse the replicates)"
    )


if __name__ == "__main__":
    main()

"""The three persisted stages: generate -> score -> summarize. Each reads only what the previous wrote.

Model and scorer are built by zero-argument factories and only when there is work to do, so re-running
a finished run loads nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.generators.base import GenerationRequest, Generator
from evalkit.runs import Run, Shard, sample_seed, stable_hash

Progress = Callable[[int], None]  # called with the number of items just finished


def _noop(_: int) -> None:
    pass


def pending_images(run: Run, bench: Benchmark, samples: list[Sample]) -> list[tuple[Sample, int]]:
    return [(s, k) for s in samples for k in range(bench.images_per_sample) if not run.has_image(s.id, k)]


def generate(
    run: Run,
    bench: Benchmark,
    samples: list[Sample],
    make_generator: Callable[[], Generator],
    *,
    global_seed: int,
    batch_size: int = 4,
    request_options: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> int:
    """Make every missing image; returns how many were made."""
    todo = pending_images(run, bench, samples)
    if not todo:
        return 0
    generator = make_generator()
    made = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        requests = [
            GenerationRequest(
                prompt=s.prompt,
                seed=sample_seed(global_seed, bench.name, s.id, k),
                input_image=_load_input(s),
                options={**(request_options or {}), **bench.request_options(s)},
            )
            for s, k in chunk
        ]
        for (s, k), req, gen in zip(chunk, requests, generator.generate(requests), strict=True):
            meta = {
                "prompt": s.prompt,
                "seed": req.seed,
                "seconds": round(gen.seconds, 4),
                "think": gen.think,
                **gen.extra,
            }
            run.save_image(s.id, k, gen.image, meta)
            made += 1
        progress(len(chunk))
    return made


def _load_input(sample: Sample):
    if sample.input_image is None:
        return None
    from PIL import Image

    with Image.open(sample.input_image) as im:
        return im.convert("RGB")


def pending_records(
    run: Run, bench: Benchmark, samples: list[Sample], scorer_hash: str
) -> list[tuple[Sample, int]]:
    done = {r["id"] for r in run.records() if r.get("scorer_hash") == scorer_hash}
    return [(s, k) for s in samples for k in range(bench.images_per_sample) if f"{s.id}/{k}" not in done]


def check_scorer(run: Run, scorer_hash: str) -> None:
    """Records scored under other scorer settings are never mixed with new ones."""
    from evalkit.errors import EvalkitError

    other = {r.get("scorer_hash") for r in run.records()} - {scorer_hash}
    if other:
        raise EvalkitError(
            f"{run.root} was scored with other scorer settings ({', '.join(sorted(map(str, other)))}); "
            "pass --rescore to move the old records aside and score again"
        )


def score(
    run: Run,
    bench: Benchmark,
    samples: list[Sample],
    make_scorer: Callable[[], SampleScorer],
    scorer_config: dict[str, Any],
    *,
    shard: Shard = Shard(),
    batch_size: int = 8,
    progress: Progress = _noop,
) -> int:
    """Score every image that has no record yet; returns how many records were written."""
    scorer_hash = stable_hash(scorer_config)
    check_scorer(run, scorer_hash)
    todo = pending_records(run, bench, samples, scorer_hash)
    if not todo:
        return 0
    scorer = make_scorer()
    written = 0
    for chunk in _chunks(todo, batch_size):
        images = [run.load_image(s.id, k) for s, k in chunk]
        for (s, k), rec in zip(chunk, scorer.score_images([s for s, _ in chunk], images), strict=True):
            run.append_record(
                {
                    "id": f"{s.id}/{k}",
                    "sample_id": s.id,
                    "k": k,
                    "protocol": bench.protocol,
                    "prompt": s.prompt,
                    "scorer_hash": scorer_hash,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    **rec,
                },
                shard,
            )
            written += 1
        progress(len(chunk))
    return written


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def summarize(run: Run, bench: Benchmark, samples: list[Sample]) -> dict[str, Any]:
    """Aggregate the run's records; counts say whether every planned image was scored."""
    records = run.records()
    summary = bench.aggregate(records)
    planned = len(samples) * bench.images_per_sample
    summary.update(
        {
            "protocol": bench.protocol,
            "benchmark": bench.name,
            "n_planned": planned,
            "n_scored": len(records),
            "scorer_hash": sorted({r.get("scorer_hash") for r in records} - {None}),
        }
    )
    run.write_summary(summary)
    return summary

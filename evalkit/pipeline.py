"""The three persisted stages: generate -> score -> summarize. Each reads only what the previous wrote.

Model and scorer are built by zero-argument factories and only when there is work to do, so re-running
a finished run loads nothing. What a benchmark needs from a generator (editing, thinking) is checked
before any image is made; `required_capabilities` lets the CLI check it before the model is even loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from evalkit.benchmarks.base import Benchmark, Sample, SampleScorer
from evalkit.errors import EvalkitError
from evalkit.generators.base import GenerationRequest, Generator
from evalkit.runs import Run, Shard, atomic_write_bytes, sample_seed, stable_hash

Progress = Callable[[int], None]  # called with the number of items just finished


def _noop(_: int) -> None:
    pass


def pending_images(run: Run, bench: Benchmark, samples: list[Sample]) -> list[tuple[Sample, int]]:
    return [(s, k) for s in samples for k in range(bench.images_per_sample) if not run.has_image(s.id, k)]


def required_capabilities(
    bench: Benchmark, samples: list[Sample], generator_options: dict[str, Any] | None = None
) -> set[str]:
    """What the generator must be able to do: "edit" (samples carry a source image), "think"."""
    needs = set()
    if any(s.input_image is not None for s in samples):
        needs.add("edit")
    if (generator_options or {}).get("think") or any(bench.request_options(s).get("think") for s in samples):
        needs.add("think")
    return needs


def capability_error(model: str, bench: Benchmark, capability: str) -> EvalkitError:
    if capability == "refine":
        return EvalkitError(f"{model} cannot refine its images; SRR (--srr K) needs a model that can (bagel)")
    if capability == "self_check":
        return EvalkitError(
            f"{model} cannot check its own images: give the self gate a reward judge (--srr-judge SPEC "
            "--srr-questions FILE) or use --srr-gate all|oracle"
        )
    if capability == "edit":
        return EvalkitError(
            f"{bench.name} edits images but {model} cannot edit; use an editing-capable model "
            "(tiny-sd3-edit, bagel, or diffusers:<a pipeline that takes an `image`>)"
        )
    return EvalkitError(
        f"{model} has no think mode; drop --think (or the benchmark's think option) for this model"
    )


def check_generator(generator: Generator, bench: Benchmark, needs: set[str]) -> None:
    """Refuse a generator that does not declare a needed capability (see `Generator`)."""
    declared = {"edit": generator.supports_edit, "think": generator.supports_think,
                "refine": generator.can_refine, "self_check": generator.can_self_check}  # fmt: skip
    for capability in sorted(needs):
        if not declared[capability]:
            raise capability_error(generator.name, bench, capability)


def write_derived_images(run: Run, bench: Benchmark, samples: list[Sample]) -> int:
    """Files a protocol keeps next to a sample's images (DPG-Bench: the 2x2 grid), made once all the
    sample's images exist. Missing ones are (re)made on every call, so an interrupted run gets them too.

    A benchmark declares them with `Benchmark.derived_names` and `Benchmark.derived_images`.
    """
    import io

    written = 0
    ks = range(bench.images_per_sample)
    for s in samples:
        folder = run.sample_dir(s.id)
        missing = [n for n in bench.derived_names(s) if not (folder / n).exists()]
        if not missing or not all(run.has_image(s.id, k) for k in ks):
            continue
        for name, image in bench.derived_images([run.load_image(s.id, k) for k in ks]).items():
            if name in missing:
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                atomic_write_bytes(folder / name, buf.getvalue())
                written += 1
    return written


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
    """Make every missing image (then the protocol's derived files, e.g. grids); returns how many."""
    todo = pending_images(run, bench, samples)
    if not todo:
        write_derived_images(run, bench, samples)
        return 0
    generator = make_generator()
    check_generator(generator, bench, required_capabilities(bench, [s for s, _ in todo], request_options))
    made = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        requests = [
            GenerationRequest(
                prompt=s.prompt,
                seed=sample_seed(global_seed, bench.name, s.id, k),
                input_image=_load_input(s),
                options={"benchmark": bench.name, **(request_options or {}), **bench.request_options(s)},
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
    write_derived_images(run, bench, samples)
    return made


def _load_input(sample: Sample):
    if sample.input_image is None:
        return None
    from PIL import Image

    with Image.open(sample.input_image) as im:
        return im.convert("RGB")


def pending_records(
    run: Run,
    bench: Benchmark,
    samples: list[Sample],
    scorer_hash: str,
    *,
    retry_failed: bool = True,
    records: list[dict[str, Any]] | None = None,
) -> list[tuple[Sample, int]]:
    """Images without a current record under `scorer_hash`. A failed record (judge error, unparseable
    reply) counts as missing unless `retry_failed` is off: resuming retries exactly the failures."""
    current = run.records() if records is None else records
    done = {
        r["id"]
        for r in current
        if r.get("scorer_hash") == scorer_hash and not (retry_failed and r.get("failed"))
    }
    return [(s, k) for s in samples for k in range(bench.images_per_sample) if f"{s.id}/{k}" not in done]


def check_scorer(run: Run, scorer_hash: str) -> None:
    """Records scored under other scorer settings are never mixed with new ones."""
    from evalkit.errors import EvalkitError

    other = {r.get("scorer_hash") for r in run.records()} - {scorer_hash}
    if other:
        raise EvalkitError(
            f"{run.root} was scored with other scorer settings ({', '.join(sorted(map(str, other)))}); "
            "pass --rescore to score again (the old records stay in force until it completes)"
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
    retry_failed: bool = True,
    target: Path | None = None,
) -> int:
    """Score every image that has no record yet (or a failed one, with `retry_failed`); returns how many
    records were written. `target` is this process's staging file of a transactional rescore (see
    `Run.staged_records`): what every process staged is read, and this one appends to `target`."""
    from evalkit.runs import append_jsonl

    scorer_hash = stable_hash(scorer_config)
    if target is None:
        check_scorer(run, scorer_hash)
    staged = run.staged_records(scorer_hash) if target is not None else None
    todo = pending_records(run, bench, samples, scorer_hash, retry_failed=retry_failed, records=staged)
    if not todo:
        return 0
    scorer = make_scorer()
    written = 0
    # an HTTP judge's scorer gets enough images per call to keep the judge's window full
    for whole in _chunks(todo, max(batch_size, scorer.parallel_images())):
        chunk, images, unreadable = _load_until_unreadable(run, whole)
        scored = scorer.score_images([s for s, _ in chunk], images) if chunk else []
        for (s, k), rec in zip(chunk, scored, strict=True):
            record = {
                "id": f"{s.id}/{k}",
                "sample_id": s.id,
                "k": k,
                "protocol": bench.protocol,
                "prompt": s.prompt,
                "scorer_hash": scorer_hash,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **rec,
            }
            if target is None:
                run.append_record(record, shard)
            else:
                append_jsonl(target, record)
            written += 1
        progress(len(chunk))
        if unreadable is not None:
            raise unreadable
    return written


def _load_until_unreadable(run: Run, chunk: list) -> tuple[list, list, Exception | None]:
    """The chunk's images up to the first that cannot be read, and that error: the images before it are
    still scored and recorded, so a resumed run asks only for what is left, whatever the chunk size."""
    from evalkit.errors import EvalkitError

    images = []
    for s, k in chunk:
        try:
            images.append(run.load_image(s.id, k))
        except EvalkitError as error:
            return chunk[: len(images)], images, error
    return chunk, images, None


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def summarize(run: Run, bench: Benchmark, samples: list[Sample]) -> dict[str, Any]:
    """Aggregate the run's records; counts say whether every planned image was scored.

    n_planned = images the run should have; n_records = images with a record; n_failed = records whose
    judging failed (never scored); n_left_out = records judged fine but left out because another image of
    their sample failed (a benchmark that scores samples as a whole lists those in `failed_samples`, e.g.
    DPG-Bench's grids); n_scored = the records the scores are made of; n_protocol_images = images of the
    whole protocol (a `--limit` run plans fewer: tables footnote it as n of N).
    """
    records = run.records()
    summary = bench.aggregate(records)
    planned = len(samples) * bench.images_per_sample
    n_failed = sum(1 for r in records if r.get("failed"))
    failed_samples = {str(s) for s in summary.get("failed_samples") or []}
    n_left_out = sum(1 for r in records if not r.get("failed") and str(r["sample_id"]) in failed_samples)
    summary.update(
        {
            "protocol": bench.protocol,
            "benchmark": bench.name,
            "n_planned": planned,
            "n_protocol_images": len(bench.samples()) * bench.images_per_sample,
            "n_records": len(records),
            "n_scored": len(records) - n_failed - n_left_out,
            "n_failed": n_failed,
            "n_left_out": n_left_out,
            "failure_reasons": _reason_counts(records),
            "scorer_hash": sorted({r.get("scorer_hash") for r in records} - {None}),
        }
    )
    run.write_summary(summary)
    return summary


def _reason_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """How often each failure reason occurred (reasons as recorded, most frequent first)."""
    counts: dict[str, int] = {}
    for r in records:
        if r.get("failed"):
            reason = str(r.get("reason") or "unknown")[:160]
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

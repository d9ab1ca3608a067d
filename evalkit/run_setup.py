"""Before any model loads: the benchmark, the run folder, and every check an evaluation can make cheaply.

`evalkit.evaluate` and `score_run` call these in order: counts, benchmark and options, samples, model
capabilities, judge, scorer options, then the pre-work checks of `evalkit.prechecks`. Nothing here loads a
model; `generator_factory` returns the function that will.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.stages import JudgeChoice, SRROptions


def load_benchmark(
    name: str, protocol: str | None = None, data_dir: Path | str | None = None, options: dict | None = None
):
    """Benchmark by name or protocol id; `options` go to its constructor (split, compat, subset, ...)."""
    import inspect

    from evalkit import paths, registry
    from evalkit.errors import did_you_mean

    bench_name = name.split("@", 1)[0]
    cls = registry.lookup("benchmarks", bench_name).load()
    options = dict(options or {})
    if options.get("compat") == "official" and "@" not in (protocol or name):
        protocol = f"{bench_name}@official"
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("data_dir", "protocol")]
    for key in options:
        if key not in accepted:
            raise did_you_mean(f"{bench_name} option", key, accepted or ["(none)"])
    return cls(paths.data_dir(Path(data_dir) if data_dir else None), protocol=protocol or name, **options)


def generation_config(
    model: str, options: dict[str, Any], dtype: str | None, seed: int, bench, bench_options, srr=None
) -> dict[str, Any]:
    """What determines the images: hashed into the run folder's name."""
    config = {
        "model": model,
        "options": {k: v for k, v in options.items() if k != "batch_size"},
        "dtype": dtype,
        "seed": seed,
        "protocol": bench.protocol,
        "images_per_sample": bench.images_per_sample,
    }
    if bench_options:
        config["bench_options"] = bench_options
    if srr:
        config["srr"] = srr  # refined images differ: a run folder of their own, rows labelled with K and gate
    from evalkit.runs import data_fingerprint

    # the content of every sample (prompt, metadata, input image): edited data gets a folder of its own
    config["data"] = data_fingerprint(bench.samples())
    return config


def open_run(model: str, options, dtype, seed, bench, runs_dir: Path, bench_options: dict, srr=None):
    from evalkit.runs import Run

    gen_config = generation_config(model, options, dtype, seed, bench, bench_options, srr)
    run = Run.for_config(Path(runs_dir), bench.protocol, model, gen_config)
    info = {"benchmark": bench.name, "protocol": bench.protocol, "model": model, "generation": gen_config}
    run.write_info({**info, "bench_options": bench_options})
    return run


def check_capabilities(
    model: str, options: dict[str, Any], bench, samples, srr: SRROptions | None = None
) -> None:
    """Refuse unknown or mistyped model options, and a model that cannot do what the run needs (edit,
    think, refine, self check), before any work when that is known without loading it; otherwise the
    pipeline checks the loaded generator."""
    from evalkit import pipeline, registry
    from evalkit.generators.base import ModelSpec

    needs = pipeline.required_capabilities(bench, samples, options)
    name, path = registry.parse_model(model)
    registry.lookup("models", name).check_options(model, options)
    if srr is not None and srr.rounds > 0:
        needs.add("refine")
        if srr.gate == "self" and not srr.judge:
            needs.add("self_check")
    if not needs:
        return
    known = registry.lookup("models", name).probe(ModelSpec(name=name, path=path, options=options))
    for capability in sorted(needs):
        if known.get(capability) is False:
            raise pipeline.capability_error(model, bench, capability)


def generator_factory(model: str, options: dict[str, Any], device: str | None, dtype: str | None):
    """A zero-argument function that loads the model (called only when a stage has work)."""
    from evalkit import registry
    from evalkit.generators.base import ModelSpec

    name, path = registry.parse_model(model)
    spec = ModelSpec(name=name, path=path, options=options, device=device, dtype=dtype)
    return lambda: registry.lookup("models", name).load()(spec)


MAX_PROMPT_CHARS = 20_000  # far above any official prompt (DPG-Bench's longest are ~2k characters)


def check_counts(limit: int | None, batch_size: int) -> None:
    """Refuse counts that would silently mean something else (`--limit -1` ran everything, 0 nothing)."""
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise EvalkitError(f"--limit must be at least 1 (got {limit}); leave it out to run every sample")
    if int(batch_size) < 1:
        raise EvalkitError(f"--batch-size must be at least 1 (got {batch_size})")


def check_samples(bench, samples: list) -> None:
    """Refuse an empty selection and prompts larger than MAX_PROMPT_CHARS before anything loads."""
    if not samples:
        raise EvalkitError(
            f"no samples to run: the {bench.name} data has none (or this shard got none); "
            "check the data files (`evalkit data verify`) and --limit"
        )
    for sample in samples:
        if len(sample.prompt) > MAX_PROMPT_CHARS:
            raise EvalkitError(
                f"sample {str(sample.id)[:40]!r}: prompt of {len(sample.prompt)} characters is over the "
                f"{MAX_PROMPT_CHARS} limit; fix the data file"
            )


def with_device(bench, score_options: dict[str, Any], device: str | None) -> dict[str, Any]:
    """The run's device also places the scorer's models, for scorers that take one (GenEval's detector)."""
    takes_device = bench.scorer_options is None or "device" in bench.scorer_options
    if device and takes_device and "device" not in score_options:
        score_options["device"] = device
    return score_options


def check_judge(judge: JudgeChoice) -> None:
    """Judge backend and options checked without loading the judge (credentials never as options)."""
    if judge.spec:
        from evalkit.judges import check_spec

        check_spec(judge.spec, judge.options)


def check_judge_required(bench, judge: JudgeChoice) -> None:
    if bench.needs_judge and not judge.spec:
        raise EvalkitError(
            f"{bench.name} is scored by a judge: pass --judge hf:<id-or-path>, "
            "--judge openai:<model> --judge-url URL, or --judge tiny (a random test judge)"
        )


def data_root(data_dir: Path | str | None) -> str:
    """The data folder a run was made from, as an absolute path (run.json keeps it for later scoring)."""
    from evalkit import paths

    return str(paths.data_dir(Path(data_dir) if data_dir else None).resolve())


def remembered_data_dir(info: dict[str, Any], data_dir: Path | str | None) -> Path | str | None:
    """--data-dir if given, else the folder the run was made from (when it still exists)."""
    if data_dir is not None:
        return data_dir
    remembered = info.get("data_dir")
    return remembered if remembered and Path(remembered).is_dir() else None


def check_before_work(bench, samples, model, options, runs_dir: Path, scoring: bool, score_options,
                       judge: JudgeChoice, srr: SRROptions | None) -> None:  # fmt: skip
    """The checks of evalkit.prechecks that apply to this call, cheapest first; nothing loads."""
    from evalkit import prechecks

    if not samples:
        raise EvalkitError(f"{bench.name}: no samples to run (check --limit and the data folder)")
    prechecks.check_writable(runs_dir)
    if srr is not None:
        prechecks.check_srr(
            model, options, rounds=srr.rounds, gate=srr.gate, samples=samples, reward_judge=srr.judge,
            reward_judge_url=srr.judge_url, questions=srr.questions,
        )  # fmt: skip
    if scoring:
        prechecks.check_scoring_inputs(bench, score_options)
        if judge.spec:
            from evalkit.judges import check_judge

            check_judge(judge.spec, url=judge.url, allow_download=judge.allow_download)

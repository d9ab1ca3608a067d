"""`evalkit.evaluate(...)`: the library entry point of an evaluation (what `evalkit run` calls).

(The module is `evaluator`, as in lm-eval, so that `evalkit.evaluate` stays the function once imported.)

    result = evalkit.evaluate("geneval", "tiny-sd3", limit=8, score_options={"detector": "tiny"})
    print(result.table)

One call runs the persisted stages of `evalkit.pipeline` on a run folder: generate -> (SRR refine) ->
score -> summarize. Every stage skips what is already on disk, so calling it again resumes; models,
judges and scorers load only when their stage has work left. Everything that can be checked without a
model (names, options, capabilities, judge requirements, SRR settings) is checked before anything loads.
`score_run` scores an existing run folder again (`evalkit score DIR`), `merge_run` merges a sharded one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.console import err
from evalkit.console import progress as progress_bar
from evalkit.errors import EvalkitError


@dataclass
class EvalResult:
    """Where a run lives and its summary (None on one rank of a sharded run: merge the ranks first)."""

    run_dir: Path
    benchmark: str
    protocol: str
    model: str
    summary: dict[str, Any] | None = None
    # the generator this call loaded (None when nothing was generated): pass it as `generator=` to reuse it
    generator: Any = field(default=None, repr=False, compare=False)

    @property
    def table(self) -> dict[str, Any]:
        """The official columns of the benchmark (e.g. {"Overall": 0.61, ...})."""
        if self.summary is None:
            raise EvalkitError(f"{self.run_dir} is one shard of a run; run `evalkit merge {self.run_dir}`")
        return self.summary.get("table", {})


@dataclass
class JudgeChoice:
    """A judge named by spec (hf:<id>, openai:<model>, tiny, ...); loaded only when scoring has work."""

    spec: str | None = None
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    allow_download: bool = False  # hf: judges only; never part of config() (it does not change replies)

    def config(self) -> dict[str, Any] | None:
        """What keys the records: the judge spec, server (without credentials) and decoding options."""
        if not self.spec:
            return None
        from evalkit.judges.openai_http import public_url

        return {"spec": self.spec, "url": public_url(self.url), **self.options}

    def load(self, run_root: Path):
        from evalkit.judges import load_judge

        extra = {"allow_download": True} if self.allow_download else {}
        return load_judge(
            self.spec, url=self.url, cache_path=run_root / "judge_cache.sqlite", **self.options, **extra
        )


@dataclass
class SRROptions:
    """Self-reflective refinement after generation (models that can refine, e.g. BAGEL).

    gate: `all` refines every image, `self` when the DVReward `judge` (else the model's own check) is below
    `threshold`, `oracle` only images the benchmark's scorer marks wrong.
    """

    rounds: int
    gate: str = "all"
    threshold: float = 0.5
    judge: str | None = None  # self gate: DVReward judge spec
    judge_url: str | None = None
    questions: Path | None = None  # self gate: DVReward questions JSONL

    def __post_init__(self) -> None:
        from evalkit.srr import SRRSettings

        if self.rounds > 0:
            SRRSettings(self.rounds, self.gate, self.threshold)  # refuses an unknown gate or bad threshold

    def config(self) -> dict[str, Any] | None:
        """The "srr" entry of the run's generation config (None without SRR): changes the run folder's
        hash, and the report labels rows with K and the gate from it."""
        if self.rounds <= 0:
            return None
        config: dict[str, Any] = {"rounds": self.rounds, "gate": self.gate}
        if self.gate == "self":
            config.update(
                threshold=float(self.threshold),
                signal="dvreward" if self.judge else "self_check",
                judge=self.judge,
                questions=str(self.questions) if self.questions else None,
            )
        return config


# -- building blocks (no model loads) -----------------------------------------------------------------
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


def _bar(show: bool, description: str, total: int):
    if show:
        return progress_bar(description, total)
    import contextlib

    return contextlib.nullcontext(), lambda n: None


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


def checked_scorer_config(bench, score_options: dict[str, Any]) -> dict[str, Any]:
    """The scorer config; a bad --score-option value is one line instead of a traceback."""
    try:
        return bench.scorer_config(**score_options)
    except EvalkitError:
        raise
    except (TypeError, ValueError) as e:
        raise EvalkitError(f"bad --score-option for {bench.name}: {e}") from None


def _with_device(bench, score_options: dict[str, Any], device: str | None) -> dict[str, Any]:
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


# -- stages ------------------------------------------------------------------------------------------
def generate_stage(run, bench, samples, make_generator, *, seed: int, batch_size: int, show_progress=True):
    """Make missing images; returns the loaded generator (None when nothing was missing)."""
    from evalkit import pipeline

    todo = pipeline.pending_images(run, bench, samples)
    if not todo:
        pipeline.write_derived_images(run, bench, samples)
        if show_progress:
            err.print(f"[dim]generate: all {len(samples) * bench.images_per_sample} images present[/dim]")
        return None
    generator = make_generator()  # load before the progress bar
    run.write_info({"generator": generator.config()})
    bar, advance = _bar(show_progress, "generate", len(todo))
    with bar:
        pipeline.generate(
            run, bench, samples, lambda: generator, global_seed=seed, batch_size=batch_size, progress=advance
        )
    return generator


def srr_stage(run, bench, samples, make_refiner, srr: SRROptions, *, seed, make_oracle_scorer=None,
              batch_size: int = 8, show_progress: bool = True):  # fmt: skip
    """Refine a run's images (after generate, before score); loads nothing when every image is done."""
    from evalkit import srr as srr_module

    todo = srr_module.pending_srr(run, bench, samples)
    if srr.rounds <= 0 or not todo:
        return None
    refiner = make_refiner()
    from evalkit import pipeline

    needs = {"refine", "self_check"} if srr.gate == "self" and not srr.judge else {"refine"}
    pipeline.check_generator(refiner, bench, needs)
    reward = None
    if srr.gate == "self" and srr.judge:
        from evalkit.rewards.factory import build_reward

        options = {"judge": srr.judge, "judge_url": srr.judge_url, "questions": srr.questions}
        reward = build_reward("dvreward", {**options, "cache_path": run.root / "judge_cache.sqlite"})
    oracle = make_oracle_scorer() if srr.gate == "oracle" and make_oracle_scorer is not None else None
    bar, advance = _bar(show_progress, f"srr x{srr.rounds} ({srr.gate})", len(todo))
    with bar:
        return srr_module.refine_run(
            run, bench, samples, refiner, rounds=srr.rounds, gate=srr.gate, threshold=srr.threshold,
            reward=reward, oracle_scorer=oracle, global_seed=seed, batch_size=batch_size, progress=advance,
        )  # fmt: skip


def score_stage(run, bench, samples, score_options, shard, batch_size, rescore: bool, judge: JudgeChoice,
                show_progress: bool = True, retry_failed: bool = True) -> None:  # fmt: skip
    """Score images without a current record (and failed ones, with `retry_failed`).

    `rescore` is transactional: new records are staged in records.rescore-<hash>.jsonl (an interrupted
    rescore resumes from it) and replace the old ones in one rename once every image has one; until then
    the old records, summary and report stay in force.
    """
    from evalkit import pipeline
    from evalkit.runs import read_jsonl, stable_hash

    config = checked_scorer_config(bench, score_options)
    if judge.spec:
        config["judge"] = judge.config()
    scorer_hash = stable_hash(config)
    target = None
    if rescore:
        if shard.world_size > 1:
            raise EvalkitError(
                "--rescore runs in one process: unset RANK/WORLD_SIZE (merge the shards first)"
            )
        target = run.rescore_path(scorer_hash)
        staged = read_jsonl(target)
        todo = pipeline.pending_records(
            run, bench, samples, scorer_hash, retry_failed=retry_failed, records=staged
        )
    else:
        pipeline.check_scorer(run, scorer_hash)
        todo = pipeline.pending_records(run, bench, samples, scorer_hash, retry_failed=retry_failed)
    if todo:
        if judge.spec:
            score_options = {**score_options, "judge": judge.load(run.root)}
        scorer = bench.make_scorer(**score_options)
        run.write_info({"scoring": config, "scorer": scorer.config()})
        bar, advance = _bar(show_progress, "score", len(todo))
        with bar:
            pipeline.score(
                run, bench, samples, lambda: scorer, config, shard=shard, batch_size=batch_size,
                progress=advance, retry_failed=retry_failed, target=target,
            )  # fmt: skip
    elif show_progress:
        err.print("[dim]score: every image already has a record[/dim]")
    if target is not None and target.exists():
        run.commit_rescore(target)


def _judge_required(bench, judge: JudgeChoice) -> None:
    if bench.needs_judge and not judge.spec:
        raise EvalkitError(
            f"{bench.name} is scored by a judge: pass --judge hf:<id-or-path>, "
            "--judge openai:<model> --judge-url URL, or --judge tiny (a random test judge)"
        )


# -- entry points ------------------------------------------------------------------------------------
def evaluate(
    benchmark: str,
    model: str,
    *,
    judge: str | None = None,
    srr: int | SRROptions | None = None,
    limit: int | None = None,
    seed: int = 42,
    protocol: str | None = None,
    runs_dir: Path | str = "runs",
    data_dir: Path | str | None = None,
    model_options: dict[str, Any] | None = None,
    bench_options: dict[str, Any] | None = None,
    score_options: dict[str, Any] | None = None,
    judge_url: str | None = None,
    judge_options: dict[str, Any] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int = 4,
    rescore: bool = False,
    retry_failed: bool = True,
    think: bool = False,
    generator: Any = None,
    stages: tuple[str, ...] = ("generate", "refine", "score", "summarize"),
    shard: Any = None,
    show_progress: bool = True,
    allow_download: bool = False,
) -> EvalResult:
    """Evaluate `model` on `benchmark` (a name or protocol id such as "geneval@long"), resumably.

    `model` is a registry name (`evalkit ls models`) or `name:<path>`; `judge` a judge spec for judged
    benchmarks; `srr` K rounds (or SRROptions) of self-reflective refinement. `generator` is an
    already-loaded generator for `model` (the run folder is still named by `model` and `model_options`).
    `stages` drops stages (e.g. ("generate",) for `evalkit gen`). On one rank of a sharded run
    (RANK/WORLD_SIZE set) the result has no summary until `merge_run`. Failed judge records are retried
    unless `retry_failed=False`. The run folder is locked while this runs (see `evalkit.runlock`): a
    second process on the same shard, or any writer beside a `rescore`, stops with the holder's pid.
    `allow_download` lets an hf: judge fetch missing weights from the hub (never implicit).

    Before anything loads (evalkit.prechecks): the runs folder is writable, the scorer's data files (question
    CSV, judge prompts) are there, the judge exists (weights on disk, server accepting connections), and SRR
    can work (a model that refines, a self gate with questions for every sample).
    """
    from evalkit.runs import Shard

    unknown = set(stages) - {"generate", "refine", "score", "summarize"}
    if unknown:
        raise EvalkitError(f"unknown stage(s) {sorted(unknown)}: use generate, refine, score, summarize")
    check_counts(limit, batch_size)
    bench_options = dict(bench_options or {})
    bench = load_benchmark(benchmark, protocol, data_dir, bench_options)
    options = dict(model_options or {})
    if think:
        options["think"] = True
    shard = shard or Shard.from_env()
    samples = shard.select(bench.samples()[:limit])
    check_samples(bench, samples)
    srr_options = srr if isinstance(srr, SRROptions) else SRROptions(int(srr or 0))
    if "refine" not in stages:
        srr_options = SRROptions(0)
    check_capabilities(model, options, bench, samples, srr_options)
    judge_choice = JudgeChoice(judge, judge_url, dict(judge_options or {}), allow_download)
    scoring = "score" in stages
    if scoring:
        _judge_required(bench, judge_choice)
        check_judge(judge_choice)
    score_options = _with_device(bench, dict(score_options or {}), device)
    if scoring:
        checked_scorer_config(bench, score_options)  # refuse bad scorer options before generating anything
    srr_cfg = srr_options.config()
    _check_before_work(bench, samples, model, options, Path(runs_dir), scoring, score_options,
                       judge_choice, srr_options if srr_cfg else None)  # fmt: skip
    try:
        run = open_run(model, options, dtype, seed, bench, Path(runs_dir), bench_options, srr_cfg)
        run.write_info({"limit": limit, "seed": seed, "data_dir": _data_root(data_dir)})
    except OSError as e:
        raise EvalkitError(
            f"cannot write a run folder under --runs-dir {runs_dir} ({e.strerror}); pass a writable folder"
        ) from None

    with run.lock("evalkit run", shard=shard, exclusive=rescore):
        return _run_stages(
            run, bench, samples, model, options, generator, device, dtype, seed, batch_size, stages,
            srr_options, judge_choice, score_options, shard, rescore, retry_failed, limit, show_progress,
        )  # fmt: skip


def _run_stages(run, bench, samples, model, options, generator, device, dtype, seed, batch_size, stages,
                srr_options, judge_choice, score_options, shard, rescore, retry_failed, limit,
                show_progress) -> EvalResult:  # fmt: skip

    scoring = "score" in stages
    srr_cfg = srr_options.config()
    loaded = generator
    make_generator = (
        (lambda: loaded) if loaded is not None else generator_factory(model, options, device, dtype)
    )
    if "generate" in stages:
        loaded = (
            generate_stage(
                run,
                bench,
                samples,
                make_generator,
                seed=seed,
                batch_size=batch_size,
                show_progress=show_progress,
            )
            or loaded
        )
    if srr_cfg:

        def make_oracle():
            extra = {"judge": judge_choice.load(run.root)} if judge_choice.spec else {}
            return bench.make_scorer(**score_options, **extra)

        srr_stage(
            run, bench, samples, (lambda: loaded) if loaded is not None else make_generator, srr_options,
            seed=seed, make_oracle_scorer=make_oracle, batch_size=batch_size, show_progress=show_progress,
        )  # fmt: skip
    result = EvalResult(run.root, bench.name, bench.protocol, model, generator=loaded)
    if scoring:
        score_stage(
            run, bench, samples, score_options, shard, batch_size, rescore, judge_choice, show_progress,
            retry_failed,
        )  # fmt: skip
    if "summarize" in stages and shard.world_size == 1:
        result.summary = _summarize(run, bench, bench.samples()[:limit])
    return result


def _data_root(data_dir: Path | str | None) -> str:
    """The data folder a run was made from, as an absolute path (run.json keeps it for later scoring)."""
    from evalkit import paths

    return str(paths.data_dir(Path(data_dir) if data_dir else None).resolve())


def _remembered_data_dir(info: dict[str, Any], data_dir: Path | str | None) -> Path | str | None:
    """--data-dir if given, else the folder the run was made from (when it still exists)."""
    if data_dir is not None:
        return data_dir
    remembered = info.get("data_dir")
    return remembered if remembered and Path(remembered).is_dir() else None


def _summarize(run, bench, samples) -> dict[str, Any]:
    """The benchmark's summary, plus what an SRR gate did (images refined, kept, abstentions)."""
    from evalkit import pipeline

    summary = pipeline.summarize(run, bench, samples)
    if (run.info().get("generation") or {}).get("srr"):
        from evalkit.srr import srr_counts

        summary["srr"] = srr_counts(run, bench, samples)
        run.write_summary(summary)
    return summary


def _check_before_work(bench, samples, model, options, runs_dir: Path, scoring: bool, score_options,
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


def score_run(
    run_dir: Path | str,
    *,
    limit: int | None = None,
    data_dir: Path | str | None = None,
    score_options: dict[str, Any] | None = None,
    judge: str | None = None,
    judge_url: str | None = None,
    judge_options: dict[str, Any] | None = None,
    device: str | None = None,
    batch_size: int = 8,
    rescore: bool = False,
    retry_failed: bool = True,
    shard: Any = None,
    show_progress: bool = True,
    allow_download: bool = False,
) -> EvalResult:
    """Score (or re-score with `rescore=True`) the images of an existing run folder and summarize it.
    Without `data_dir` the data folder recorded in run.json is used (when it still exists)."""
    from evalkit.runs import Run, Shard

    path = Path(run_dir)
    if not (path / "run.json").exists():
        raise EvalkitError(
            f"{path} is not a run folder (no run.json); did you mean `evalkit run {path} ...`?"
        )
    check_counts(limit, batch_size)
    run = Run(path)
    info = run.info()
    data_dir = _remembered_data_dir(info, data_dir)
    bench = load_benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
    made_from = (info.get("generation") or {}).get("data")
    if made_from is not None:
        from evalkit.runs import data_fingerprint

        if data_fingerprint(bench.samples()) != made_from:
            raise EvalkitError(
                f"the {bench.name} data changed since the images of {path} were made; "
                "run `evalkit run` again (changed data gets a run folder of its own)"
            )
    shard = shard or Shard.from_env()
    samples = shard.select(bench.samples()[: limit if limit is not None else info.get("limit")])
    if info["generation"].get("srr"):
        from evalkit.srr import pending_srr

        if left := pending_srr(run, bench, samples):
            raise EvalkitError(
                f"SRR unfinished for {len(left)} images; re-run `evalkit run ... --srr K` first"
            )
    judge_choice = JudgeChoice(judge, judge_url, dict(judge_options or {}), allow_download)
    check_judge(judge_choice)
    _judge_required(bench, judge_choice)
    _check_before_work(bench, samples, info.get("model", ""), {}, run.root, True, dict(score_options or {}),
                       judge_choice, None)  # fmt: skip
    with run.lock("evalkit score", shard=shard, exclusive=rescore):
        score_stage(
            run, bench, samples, _with_device(bench, dict(score_options or {}), device), shard,
            batch_size, rescore, judge_choice, show_progress, retry_failed,
        )  # fmt: skip
        result = EvalResult(run.root, bench.name, bench.protocol, info.get("model", ""))
        if shard.world_size == 1:
            result.summary = _summarize(run, bench, bench.samples()[: info.get("limit")])
    return result


def merge_run(run_dir: Path | str, *, data_dir: Path | str | None = None) -> tuple[int, EvalResult]:
    """Merge the per-rank records of a sharded run and summarize it; returns (records merged, result)."""
    from evalkit.runs import Run

    run = Run(Path(run_dir))
    info = run.info()
    data_dir = _remembered_data_dir(info, data_dir)
    bench = load_benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
    with run.lock("evalkit merge", exclusive=True):
        n = run.merge_shards()
        summary = _summarize(run, bench, bench.samples()[: info.get("limit")])
    return n, EvalResult(run.root, bench.name, bench.protocol, info.get("model", ""), summary)

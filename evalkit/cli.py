"""The `evalkit` command line. Listing commands import no torch; errors are one line with exit code 2."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.cli_data import data_app
from evalkit.cli_dvreward import dvreward_app
from evalkit.console import err, out
from evalkit.console import progress as _progress
from evalkit.errors import EvalkitError
from evalkit.grpo.ablate_cli import ablate_reward

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Evaluate and improve text-to-image models."
)
app.add_typer(data_app, name="data")
app.add_typer(dvreward_app, name="dvreward")
app.command("ablate-reward")(ablate_reward)

from evalkit.cli_options import (  # noqa: E402 - option types shared by the command modules
    BatchOpt,
    BenchOptionOpt,
    CompatOpt,
    DataDirOpt,
    DetectorOpt,
    DeviceOpt,
    DtypeOpt,
    JudgeOpt,
    JudgeOptionOpt,
    JudgeUrlOpt,
    LimitOpt,
    ModelOpt,
    OptionOpt,
    ProtocolOpt,
    RunsDirOpt,
    ScoreOptionOpt,
    SeedOpt,
    ThinkOpt,
)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse (numbers, booleans, lists), else strings."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise EvalkitError(f"option '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        options[key.strip()] = _parse_value(value)
    return options


# -- listing (no torch) -----------------------------------------------------------------------------
@app.command("ls")
def ls(
    kind: Annotated[str | None, typer.Argument(help="models, benchmarks, judges or rewards")] = None,
) -> None:
    """List registered models, benchmarks (with protocols), judges and rewards."""
    from rich.table import Table

    from evalkit import data, registry
    from evalkit.errors import did_you_mean

    kinds = [kind] if kind else list(registry.KINDS)
    for k in kinds:
        if k not in registry.KINDS:
            raise did_you_mean("kind", k, list(registry.KINDS))
        table = Table(title=k, show_header=True)
        table.add_column("name")
        table.add_column("description")
        for name, entry in registry.KINDS[k].items():
            summary = entry.summary
            if k == "benchmarks":
                summary += " (protocols: " + ", ".join(data.manifest(name)["protocols"]) + ")"
            table.add_row(name, summary)
        out.print(table)


# -- run building blocks --------------------------------------------------------------------------------
def _benchmark(name: str, protocol: str | None, data_dir: Path | None, options: dict[str, Any] | None = None):
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
    return cls(paths.data_dir(data_dir), protocol=protocol or name, **options)


def _bench_options(bench_option: list[str] | None, compat: str | None) -> dict[str, Any]:
    options = parse_options(bench_option)
    if compat:
        options["compat"] = compat
    return options


def _generation_config(
    model: str, options: dict[str, Any], dtype: str | None, seed: int, bench, bench_options, srr=None
) -> dict[str, Any]:
    """What determines the images: hashed into the run folder's name."""
    gen_options = {k: v for k, v in options.items() if k != "batch_size"}
    config = {
        "model": model,
        "options": gen_options,
        "dtype": dtype,
        "seed": seed,
        "protocol": bench.protocol,
        "images_per_sample": bench.images_per_sample,
    }
    if bench_options:
        config["bench_options"] = bench_options
    if srr:
        config["srr"] = srr  # refined images differ: a run folder of their own, rows labelled with K and gate
    return config


def _open_run(
    model: str, options, dtype, seed, bench, runs_dir: Path, bench_options: dict[str, Any], srr=None
):
    from evalkit.runs import Run

    gen_config = _generation_config(model, options, dtype, seed, bench, bench_options, srr)
    run = Run.for_config(runs_dir, bench.protocol, model, gen_config)
    info = {"benchmark": bench.name, "protocol": bench.protocol, "model": model, "generation": gen_config}
    run.write_info({**info, "bench_options": bench_options})
    return run


def _check_capabilities(model: str, options: dict[str, Any], bench, samples) -> None:
    """Refuse a model that cannot do what the run needs (edit, think) before any work, when that is
    known without loading it; otherwise the pipeline checks the loaded generator before drawing."""
    from evalkit import pipeline, registry
    from evalkit.generators.base import ModelSpec

    needs = pipeline.required_capabilities(bench, samples, options)
    if not needs:
        return
    name, path = registry.parse_model(model)
    known = registry.lookup("models", name).probe(ModelSpec(name=name, path=path, options=options))
    for capability in sorted(needs):
        if known.get(capability) is False:
            raise pipeline.capability_error(model, bench, capability)


def _make_generator_factory(model: str, options: dict[str, Any], device: str | None, dtype: str | None):
    from evalkit import registry
    from evalkit.generators.base import ModelSpec

    name, path = registry.parse_model(model)
    spec = ModelSpec(name=name, path=path, options=options, device=device, dtype=dtype)

    def factory():
        generator = registry.lookup("models", name).load()(spec)
        return generator

    return factory


def _do_generate(run, bench, samples, model, options, device, dtype, seed, batch_size):
    """Make missing images; returns the loaded generator (None when nothing was missing)."""
    from evalkit import pipeline

    todo = pipeline.pending_images(run, bench, samples)
    if not todo:
        err.print(f"[dim]generate: all {len(samples) * bench.images_per_sample} images present[/dim]")
        return None
    generator = _make_generator_factory(model, options, device, dtype)()  # load before the progress bar
    run.write_info({"generator": generator.config()})
    bar, advance = _progress("generate", len(todo))
    with bar:
        pipeline.generate(
            run, bench, samples, lambda: generator, global_seed=seed, batch_size=batch_size, progress=advance
        )
    return generator


@dataclass
class JudgeChoice:
    spec: str | None = None
    url: str | None = None
    options: dict[str, Any] | None = None

    def config(self) -> dict[str, Any] | None:
        """What keys the records: the judge spec, server (without credentials) and decoding options."""
        if not self.spec:
            return None
        from evalkit.judges.openai_http import public_url

        return {"spec": self.spec, "url": public_url(self.url), **(self.options or {})}

    def load(self, run):
        from evalkit.judges import load_judge

        return load_judge(
            self.spec, url=self.url, cache_path=run.root / "judge_cache.sqlite", **(self.options or {})
        )


def _do_score(
    run, bench, samples, score_options, shard, batch_size, rescore: bool, judge: JudgeChoice
) -> None:
    from evalkit import pipeline
    from evalkit.runs import stable_hash

    config = bench.scorer_config(**score_options)
    if judge.spec:
        config["judge"] = judge.config()
    if rescore:
        _move_records_aside(run)
    todo = pipeline.pending_records(run, bench, samples, stable_hash(config))
    pipeline.check_scorer(run, stable_hash(config))
    if not todo:
        err.print("[dim]score: every image already has a record[/dim]")
        return
    if judge.spec:
        score_options = {**score_options, "judge": judge.load(run)}
    scorer = bench.make_scorer(**score_options)
    run.write_info({"scoring": config, "scorer": scorer.config()})
    bar, advance = _progress("score", len(todo))
    with bar:
        pipeline.score(
            run, bench, samples, lambda: scorer, config, shard=shard, batch_size=batch_size, progress=advance
        )


def _move_records_aside(run) -> None:
    import time

    for path in [run.root / "records.jsonl", *run.shard_record_files()]:
        if path.exists():
            path.rename(path.with_name(f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.bak.jsonl"))


def _print_summary(run, summary: dict[str, Any]) -> None:
    from evalkit.report.tables import build_table, render

    out.print(render(build_table([run.root]), "md"))
    out.print(f"[dim]{run.root}[/dim]")


def _score_options(
    detector: str | None, score_option: list[str] | None, device: str | None
) -> dict[str, Any]:
    options = parse_options(score_option)
    if detector:
        options["detector"] = detector
    if device:
        options["device"] = device
    return options


# -- commands ----------------------------------------------------------------------------------------
@app.command()
def run(
    benchmark: Annotated[str, typer.Argument(help="benchmark or protocol id, e.g. geneval, geneval@long")],
    model: ModelOpt,
    protocol: ProtocolOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 42,
    runs_dir: RunsDirOpt = Path("runs"),
    data_dir: DataDirOpt = None,
    option: OptionOpt = None,
    score_option: ScoreOptionOpt = None,
    detector: DetectorOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = 4,
    rescore: Annotated[bool, typer.Option(help="move old records aside and score again")] = False,
    bench_option: BenchOptionOpt = None,
    compat: CompatOpt = None,
    judge: JudgeOpt = None,
    judge_url: JudgeUrlOpt = None,
    judge_option: JudgeOptionOpt = None,
    think: ThinkOpt = False,
    srr: Annotated[
        int, typer.Option("--srr", help="self-reflective refinement rounds (models with refine)")
    ] = 0,
    srr_gate: Annotated[
        str, typer.Option(help="SRR gating: all, self or oracle (the benchmark's answer)")
    ] = "all",
    srr_threshold: Annotated[
        float, typer.Option(help="self gate: refine when the reward is below this")
    ] = 0.5,
    srr_judge: Annotated[
        str | None, typer.Option(help="self gate: DVReward judge (else the model's own check)")
    ] = None,
    srr_judge_url: Annotated[str | None, typer.Option(help="self gate: DVReward judge server URL")] = None,
    srr_questions: Annotated[Path | None, typer.Option(help="self gate: DVReward questions JSONL")] = None,
) -> None:
    """Generate, (optionally refine,) score and summarize a benchmark in one go (resumable)."""
    from evalkit import pipeline
    from evalkit.cli_dvreward import srr_config, srr_stage
    from evalkit.runs import Shard

    bench_options = _bench_options(bench_option, compat)
    bench = _benchmark(benchmark, protocol, data_dir, bench_options)
    options = parse_options(option)
    if think:
        options["think"] = True
    shard = Shard.from_env()
    samples = shard.select(bench.samples()[:limit])
    _check_capabilities(model, options, bench, samples)
    if getattr(bench, "needs_judge", False) and not judge:
        raise EvalkitError(
            f"{bench.name} is scored by a judge: pass --judge hf:<id-or-path>, "
            "--judge openai:<model> --judge-url URL, or --judge tiny (a random test judge)"
        )
    score_options = _score_options(detector, score_option, device)
    bench.scorer_config(**score_options)  # refuse bad scorer options before generating anything
    srr_cfg = srr_config(srr, srr_gate, srr_threshold, srr_judge, srr_questions)
    runs = _open_run(model, options, dtype, seed, bench, runs_dir, bench_options, srr_cfg)
    runs.write_info({"limit": limit, "seed": seed})
    generator = _do_generate(runs, bench, samples, model, options, device, dtype, seed, batch_size)
    judge_choice = JudgeChoice(judge, judge_url, parse_options(judge_option))
    if srr_cfg:

        def make_oracle():
            extra = {"judge": judge_choice.load(runs)} if judge_choice.spec else {}
            return bench.make_scorer(**score_options, **extra)

        srr_stage(
            runs,
            bench,
            samples,
            (lambda: generator) if generator else _make_generator_factory(model, options, device, dtype),
            rounds=srr,
            gate=srr_gate,
            threshold=srr_threshold,
            seed=seed,
            make_oracle_scorer=make_oracle,
            reward_judge=srr_judge,
            reward_judge_url=srr_judge_url,
            questions=srr_questions,
            batch_size=batch_size,
        )
    _do_score(
        runs,
        bench,
        samples,
        score_options,
        shard,
        batch_size,
        rescore,
        judge_choice,
    )
    if shard.world_size > 1:
        err.print(f"rank {shard.rank} done; after all ranks finish run: evalkit merge {runs.root}")
        return
    summary = pipeline.summarize(runs, bench, bench.samples()[:limit])
    _print_summary(runs, summary)


@app.command()
def gen(
    benchmark: Annotated[str, typer.Argument(help="benchmark or protocol id")],
    model: ModelOpt,
    protocol: ProtocolOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 42,
    runs_dir: RunsDirOpt = Path("runs"),
    data_dir: DataDirOpt = None,
    option: OptionOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = 4,
    bench_option: BenchOptionOpt = None,
    compat: CompatOpt = None,
    think: ThinkOpt = False,
) -> None:
    """Only generate images (skips those already on disk)."""
    from evalkit.runs import Shard

    bench_options = _bench_options(bench_option, compat)
    bench = _benchmark(benchmark, protocol, data_dir, bench_options)
    options = parse_options(option)
    if think:
        options["think"] = True
    samples = Shard.from_env().select(bench.samples()[:limit])
    _check_capabilities(model, options, bench, samples)
    runs = _open_run(model, options, dtype, seed, bench, runs_dir, bench_options)
    runs.write_info({"limit": limit, "seed": seed})
    _do_generate(runs, bench, samples, model, options, device, dtype, seed, batch_size)
    out.print(str(runs.root))


@app.command()
def score(
    target: Annotated[str, typer.Argument(help="a run folder, or `geneval` with --detections")],
    detections: Annotated[
        Path | None, typer.Option(help="GenEval: re-score recorded detections (JSONL)")
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="where re-scored lines go (default stdout); TIIF import: summaries JSON"),
    ] = None,
    limit: LimitOpt = None,
    data_dir: DataDirOpt = None,
    score_option: ScoreOptionOpt = None,
    detector: DetectorOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchOpt = 8,
    rescore: Annotated[bool, typer.Option(help="move old records aside and score again")] = False,
    judge: JudgeOpt = None,
    judge_url: JudgeUrlOpt = None,
    judge_option: JudgeOptionOpt = None,
    import_judgments: Annotated[
        Path | None, typer.Option(help="TIIF: re-score the released judge outputs in DIR and print the table")
    ] = None,
    reward: Annotated[
        str | None, typer.Option(help="score a folder of images with this reward model")
    ] = None,
    reward_option: Annotated[
        list[str] | None, typer.Option(help="reward option key=value (e.g. tiny=true)")
    ] = None,
    prompts: Annotated[Path | None, typer.Option(help="--reward: prompts file (.txt or .jsonl)")] = None,
) -> None:
    """Score a run folder, a folder of images with --reward, or released outputs (GenEval detections,
    TIIF judgments)."""
    from evalkit import pipeline
    from evalkit.runs import Run, Shard

    if reward is not None:
        from evalkit.reward_folder import score_folder

        written, n_scored, n_total = score_folder(
            reward, Path(target), prompts_file=prompts, options=parse_options(reward_option), judge=judge,
            judge_url=judge_url, batch_size=batch_size, out=out_file,
        )  # fmt: skip
        out.print(f"{n_scored}/{n_total} images scored with {reward} -> {written}")
        if n_scored < n_total:
            err.print(f"{n_total - n_scored} abstained (null in {written})")
        return

    if import_judgments is not None:
        if target.split("@")[0] != "tiif":
            raise EvalkitError("--import-judgments is only for tiif")
        from evalkit.benchmarks.tiif.official import format_table
        from evalkit.benchmarks.tiif.official import import_judgments as import_dir

        if not import_judgments.exists():
            raise EvalkitError(f"no such folder: {import_judgments}")
        results = import_dir(import_judgments, excel_rounding=True)
        if out_file is not None:  # the full official summaries (dimensions, groups, overall, table)
            out_file.write_text(json.dumps(results, indent=2) + "\n")
        print(format_table(results))
        return
    if detections is not None:
        if target.split("@")[0] != "geneval":
            raise EvalkitError("--detections is only for geneval")
        from evalkit.benchmarks.geneval.official import rescore_geneval_detections

        rescore_geneval_detections(detections, out_file, parse_options(score_option))
        return
    path = Path(target)
    if not (path / "run.json").exists():
        raise EvalkitError(
            f"{target} is not a run folder (no run.json); did you mean `evalkit run {target} ...`?"
        )
    runs = Run(path)
    info = runs.info()
    bench = _benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
    shard = Shard.from_env()
    samples = shard.select(bench.samples()[: limit if limit is not None else info.get("limit")])
    if info["generation"].get("srr"):
        from evalkit.srr import pending_srr

        if left := pending_srr(runs, bench, samples):
            raise EvalkitError(
                f"SRR unfinished for {len(left)} images; re-run `evalkit run ... --srr K` first"
            )
    judge_choice = JudgeChoice(judge, judge_url, parse_options(judge_option))
    _do_score(
        runs,
        bench,
        samples,
        _score_options(detector, score_option, device),
        shard,
        batch_size,
        rescore,
        judge_choice,
    )
    if shard.world_size == 1:
        _print_summary(runs, pipeline.summarize(runs, bench, bench.samples()[: info.get("limit")]))


@app.command()
def merge(
    run_dir: Annotated[Path, typer.Argument(help="run folder of a sharded run")], data_dir: DataDirOpt = None
) -> None:
    """Merge the per-rank records of a sharded run and write its summary."""
    from evalkit import pipeline
    from evalkit.runs import Run

    runs = Run(run_dir)
    info = runs.info()
    n = runs.merge_shards()
    bench = _benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
    err.print(f"merged {n} records")
    _print_summary(runs, pipeline.summarize(runs, bench, bench.samples()[: info.get("limit")]))


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders (rows of the table)")],
    fmt: Annotated[str, typer.Option("--format", help="md, latex or csv")] = "md",
    baseline: Annotated[Path | None, typer.Option(help="a run folder to show signed deltas against")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="write to a file instead of stdout")] = None,
) -> None:
    """A paper-style table: rows = runs, columns = official benchmark columns, protocol in a footnote."""
    from evalkit.report.tables import build_table, render

    text = render(build_table(run_dirs, baseline=baseline), fmt)
    if output:
        output.write_text(text)
    else:
        print(text)


@app.command()
def doctor(data_dir: DataDirOpt = None) -> None:
    """Check torch/CUDA, optional packages, weights and benchmark data."""
    from evalkit.doctor import checks

    failed = False
    for name, ok, detail in checks(data_dir):
        mark = "[green]ok[/green]" if ok else "[yellow]--[/yellow]"
        out.print(f"{mark}  {name}: {detail}")
        failed |= ok is False and name.startswith("torch")
    raise typer.Exit(1 if failed else 0)


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; library loading bars and advisories only add noise."""
    import os

    for key, value in (
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(key, value)
    for name in (
        "transformers",
        "diffusers",
    ):  # already imported (e.g. by a caller): switch bars off directly
        if name in sys.modules:
            sys.modules[name].utils.logging.disable_progress_bar()
    if not os.environ.get("EVALKIT_WARNINGS"):
        import warnings

        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)


def main() -> None:
    import click

    _quiet_libraries()
    try:
        code = app(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("interrupted; finished samples are kept, re-run the same command to resume")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except EvalkitError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        err.print("interrupted; finished samples are kept, re-run the same command to resume")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

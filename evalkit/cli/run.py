"""`evalkit run | gen | score | merge`: parse the options and call `evalkit.evaluator`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.cli.options import (
    AllowDownloadOpt,
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
    RescoreOpt,
    RetryFailedOpt,
    RunsDirOpt,
    ScoreOptionOpt,
    SeedOpt,
    ThinkOpt,
    parse_options,
)
from evalkit.console import err, out
from evalkit.errors import EvalkitError


def bench_options(bench_option: list[str] | None, compat: str | None) -> dict[str, Any]:
    options = parse_options(bench_option)
    if compat:
        options["compat"] = compat
    return options


def score_options(detector: str | None, score_option: list[str] | None) -> dict[str, Any]:
    """--score-option pairs and --detector (the run's --device reaches scorers that take one)."""
    options = parse_options(score_option)
    if detector:
        options["detector"] = detector
    return options


def print_result(result) -> None:
    """The run's row as a Markdown table (rank 0 of a torchrun job), or the merge hint on one rank of
    shards started one by one."""
    if result.rank != 0 and result.world_size > 1 and result.summary is not None:
        return  # rank 0 prints the job's table
    if result.summary is None:
        err.print(f"this rank is done; after all ranks finish run: evalkit merge {result.run_dir}")
        return
    from evalkit.report.tables import build_table, render

    out.print(render(build_table([result.run_dir]), "md"))
    out.print(f"[dim]{result.run_dir}[/dim]")


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
    rescore: RescoreOpt = False,
    retry_failed: RetryFailedOpt = True,
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
    allow_download: AllowDownloadOpt = False,
) -> None:
    """Generate, (optionally refine,) score and summarize a benchmark in one go (resumable)."""
    from evalkit.evaluator import SRROptions, evaluate

    result = evaluate(
        benchmark, model, protocol=protocol, limit=limit, seed=seed, runs_dir=runs_dir, data_dir=data_dir,
        model_options=parse_options(option), bench_options=bench_options(bench_option, compat),
        score_options=score_options(detector, score_option), device=device, dtype=dtype,
        batch_size=batch_size, rescore=rescore, retry_failed=retry_failed, think=think, judge=judge,
        judge_url=judge_url,
        judge_options=parse_options(judge_option),
        srr=SRROptions(srr, srr_gate, srr_threshold, srr_judge, srr_judge_url, srr_questions),
        allow_download=allow_download,
    )  # fmt: skip
    print_result(result)


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
    from evalkit.evaluator import evaluate

    result = evaluate(
        benchmark, model, protocol=protocol, limit=limit, seed=seed, runs_dir=runs_dir, data_dir=data_dir,
        model_options=parse_options(option), bench_options=bench_options(bench_option, compat),
        device=device, dtype=dtype, batch_size=batch_size, think=think, stages=("generate",),
    )  # fmt: skip
    out.print(str(result.run_dir))


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
    rescore: RescoreOpt = False,
    retry_failed: RetryFailedOpt = True,
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
    allow_download: AllowDownloadOpt = False,
) -> None:
    """Score a run folder, a folder of images with --reward, or released outputs (GenEval detections,
    TIIF judgments)."""
    if reward is not None:
        from evalkit.reward_folder import score_folder

        written, n_scored, n_total = score_folder(
            reward, Path(target), prompts_file=prompts, options=parse_options(reward_option), judge=judge,
            judge_url=judge_url, batch_size=batch_size, out=out_file, allow_download=allow_download,
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
    from evalkit.evaluator import score_run

    result = score_run(
        target, limit=limit, data_dir=data_dir, score_options=score_options(detector, score_option),
        device=device, judge=judge, judge_url=judge_url, judge_options=parse_options(judge_option), batch_size=batch_size,
        rescore=rescore, retry_failed=retry_failed, allow_download=allow_download,
    )  # fmt: skip
    if result.summary is not None:
        print_result(result)


def merge(
    run_dir: Annotated[Path, typer.Argument(help="run folder of a sharded run")], data_dir: DataDirOpt = None
) -> None:
    """Merge the per-rank records of a sharded run and write its summary."""
    from evalkit.evaluator import merge_run

    n, result = merge_run(run_dir, data_dir=data_dir)
    err.print(f"merged {n} records")
    print_result(result)


def register(app: typer.Typer) -> None:
    for command in (run, gen, score, merge):
        app.command()(command)

"""`evalkit.evaluate(...)`: the library entry point of an evaluation (what `evalkit run` calls).

(The module is `evaluator`, as in lm-eval, so that `evalkit.evaluate` stays the function once imported.)

    result = evalkit.evaluate("geneval", "tiny-sd3", limit=8, score_options={"detector": "tiny"})
    print(result.table)

One call runs the persisted stages (`evalkit.stages`) on a run folder: generate -> (SRR refine) -> score ->
summarize. Every stage skips what is already on disk, so calling it again resumes; models, judges and
scorers load only when their stage has work left. Everything that can be checked without a model
(`evalkit.run_setup`: names, options, capabilities, judge requirements, SRR settings) is checked before
anything loads. Under torchrun every rank takes its shard and rank 0 merges and summarizes once all are
done (`evalkit.distributed`). `score_run` scores an existing run folder again (`evalkit score DIR`),
`merge_run` merges the shards of a run whose ranks were started one by one (or of an interrupted job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit import distributed
from evalkit.errors import EvalkitError
from evalkit.run_setup import (
    MAX_PROMPT_CHARS,
    check_before_work,
    check_capabilities,
    check_counts,
    check_judge,
    check_judge_required,
    check_samples,
    data_root,
    generation_config,
    generator_factory,
    load_benchmark,
    open_run,
    remembered_data_dir,
    with_device,
)
from evalkit.stages import (
    RESCORE_ALONE,
    JudgeChoice,
    SRROptions,
    checked_scorer_config,
    commit_rescore_stage,
    generate_stage,
    score_stage,
    scorer_hash,
    srr_stage,
    summarize_run,
)

__all__ = [
    "MAX_PROMPT_CHARS", "EvalResult", "JudgeChoice", "SRROptions", "check_capabilities", "check_counts",
    "check_judge", "check_samples", "checked_scorer_config", "evaluate", "generate_stage",
    "generation_config", "generator_factory", "load_benchmark", "merge_run", "open_run", "score_run",
    "score_stage", "srr_stage",
]  # fmt: skip


@dataclass
class EvalResult:
    """Where a run lives and its summary (None on one rank of shards started one by one: merge them)."""

    run_dir: Path
    benchmark: str
    protocol: str
    model: str
    summary: dict[str, Any] | None = None
    # the generator this call loaded (None when nothing was generated): pass it as `generator=` to reuse it
    generator: Any = field(default=None, repr=False, compare=False)
    rank: int = 0  # this process's rank in a torchrun job (rank 0 prints; every rank gets the summary)
    world_size: int = 1

    @property
    def table(self) -> dict[str, Any]:
        """The official columns of the benchmark (e.g. {"Overall": 0.61, ...})."""
        if self.summary is None:
            raise EvalkitError(f"{self.run_dir} is one shard of a run; run `evalkit merge {self.run_dir}`")
        return self.summary.get("table", {})


def _team(shard: Any):
    """(shard, team): the team when this process is one rank of a job started together (torchrun) and
    the caller did not pick a shard; RANK/WORLD_SIZE alone are shards merged later."""
    from evalkit.runs import Shard

    if shard is not None:
        return shard, None
    shard = Shard.from_env()
    if not distributed.launched_together():
        return shard, None
    return shard, distributed.Team.connect(shard.rank, shard.world_size)


def _merged_summary(team, run, bench, planned: list, summarize: bool) -> dict[str, Any] | None:
    """After every rank's work: rank 0 merges the shards and summarizes; the others read its summary."""

    def merge() -> dict[str, Any] | None:
        with run.lock("evalkit run (rank 0 merging)", exclusive=True):
            run.merge_shards()
            return summarize_run(run, bench, planned) if summarize else None

    summary = distributed.finish(team, run, merge)
    if team.rank != 0 and summarize:
        summary = run.summary()
    return summary


def _committed_summary(team, run, bench, selected: list, planned: list, hash_: str, summarize: bool):
    """A team rescore once every rank has staged its shard: rank 0 commits the staged records of all
    ranks in one rename and summarizes, the others read its summary. The ranks still hold the run's
    team lock (see `evalkit.runlock`), so no outside writer gets in between the staging and the commit."""

    def commit() -> dict[str, Any] | None:
        commit_rescore_stage(run, bench, selected, hash_)
        return summarize_run(run, bench, planned) if summarize else None

    summary = distributed.finish(team, run, commit)
    if team.rank != 0 and summarize:
        summary = run.summary()
    return summary


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
    `stages` drops stages (e.g. ("generate",) for `evalkit gen`). Under torchrun (WORLD_SIZE > 1 and
    MASTER_ADDR set) each rank evaluates its shard with its models on `cuda:$LOCAL_RANK`, and rank 0
    merges and summarizes once every rank is done; every rank returns the summary. With RANK/WORLD_SIZE
    alone (or an explicit `shard`) the result has no summary until `merge_run`. Failed judge records are
    retried unless `retry_failed=False`. The run folder is locked while this runs (see `evalkit.runlock`):
    a second process on the same shard, or any writer beside a `rescore`, stops with the holder's pid. A
    `rescore` under torchrun is staged by every rank and committed by rank 0 once all are done;
    independent RANK/WORLD_SIZE shards are refused it.
    `allow_download` lets an hf: judge fetch missing weights from the hub (never implicit).

    Before anything loads (evalkit.prechecks): the runs folder is writable, the scorer's data files (question
    CSV, judge prompts) are there, the judge exists (weights on disk, server accepting connections), and SRR
    can work (a model that refines, a self gate with questions for every sample).
    """
    unknown = set(stages) - {"generate", "refine", "score", "summarize"}
    if unknown:
        raise EvalkitError(f"unknown stage(s) {sorted(unknown)}: use generate, refine, score, summarize")
    check_counts(limit, batch_size)
    shard, team = _team(shard)
    if rescore and shard.world_size > 1 and team is None:
        raise EvalkitError(RESCORE_ALONE)  # independent shards: nobody knows when to commit
    with distributed.reporting(team):
        bench_options = dict(bench_options or {})
        bench = load_benchmark(benchmark, protocol, data_dir, bench_options)
        options = dict(model_options or {})
        if think:
            options["think"] = True
        planned = bench.samples()[:limit]
        check_samples(bench, planned)  # every rank checks the whole selection: they all agree
        samples = shard.select(planned)
        srr_options = srr if isinstance(srr, SRROptions) else SRROptions(int(srr or 0))
        if "refine" not in stages:
            srr_options = SRROptions(0)
        check_capabilities(model, options, bench, planned, srr_options)
        judge_choice = JudgeChoice(judge, judge_url, dict(judge_options or {}), allow_download)
        scoring = "score" in stages
        if scoring:
            check_judge_required(bench, judge_choice)
            check_judge(judge_choice)
        score_options = with_device(bench, dict(score_options or {}), device)
        if scoring:
            checked_scorer_config(bench, score_options)  # bad scorer options: refused before any image
        srr_cfg = srr_options.config()
        check_before_work(bench, planned, model, options, Path(runs_dir), scoring, score_options,
                          judge_choice, srr_options if srr_cfg else None)  # fmt: skip
        try:
            run = open_run(model, options, dtype, seed, bench, Path(runs_dir), bench_options, srr_cfg)
            run.write_info({"limit": limit, "seed": seed, "data_dir": data_root(data_dir)})
        except OSError as e:
            raise EvalkitError(
                f"cannot write a run folder under --runs-dir {runs_dir} ({e.strerror}); pass a writable folder"
            ) from None
        if team is not None:
            team.meet(f"{run.root.parent.name}/{run.root.name}")
            show_progress = show_progress and team.rank == 0  # one set of bars, not one per rank
        team_rescore = team is not None and rescore and scoring
        with run.lock("evalkit run", shard=shard, exclusive=rescore):  # a team rescore: its ranks together
            result = _run_stages(
                run, bench, samples, model, options, generator, device, dtype, seed, batch_size, stages,
                srr_options, judge_choice, score_options, shard, rescore, retry_failed, show_progress,
                team.beat if team is not None else _no_beat, commit=team is None,
            )  # fmt: skip
            if team_rescore:
                hash_ = scorer_hash(bench, score_options, judge_choice)[1]
                result.summary = _committed_summary(team, run, bench, planned, planned, hash_,
                                                    "summarize" in stages)  # fmt: skip
        result.rank, result.world_size = shard.rank, shard.world_size
        if team is not None and not team_rescore:
            result.summary = _merged_summary(team, run, bench, planned, "summarize" in stages)
        elif "summarize" in stages and shard.world_size == 1:
            result.summary = summarize_run(run, bench, planned)
    return result


def _no_beat() -> None:
    pass


def _run_stages(run, bench, samples, model, options, generator, device, dtype, seed, batch_size, stages,
                srr_options, judge_choice, score_options, shard, rescore, retry_failed, show_progress,
                beat, commit: bool = True) -> EvalResult:  # fmt: skip
    loaded = generator
    make_generator = (
        (lambda: loaded) if loaded is not None else generator_factory(model, options, device, dtype)
    )
    if "generate" in stages:
        made = generate_stage(run, bench, samples, make_generator, seed=seed, batch_size=batch_size,
                              show_progress=show_progress, beat=beat)  # fmt: skip
        loaded = made or loaded
    if srr_options.config():

        def make_oracle():
            extra = {"judge": judge_choice.load(run.root)} if judge_choice.spec else {}
            return bench.make_scorer(**score_options, **extra)

        srr_stage(
            run, bench, samples, (lambda: loaded) if loaded is not None else make_generator, srr_options,
            seed=seed, make_oracle_scorer=make_oracle, batch_size=batch_size, show_progress=show_progress,
            beat=beat,
        )  # fmt: skip
    if "score" in stages:
        score_stage(
            run, bench, samples, score_options, shard, batch_size, rescore, judge_choice, show_progress,
            retry_failed, beat, commit,
        )  # fmt: skip
    return EvalResult(run.root, bench.name, bench.protocol, model, generator=loaded)


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
    Without `data_dir` the data folder recorded in run.json is used (when it still exists). Under
    torchrun each rank scores its shard and rank 0 merges and summarizes, as in `evaluate`; a rescore's
    ranks stage their shards and rank 0 commits them all in one rename (`commit_rescore_stage`)."""
    from evalkit.runs import Run

    path = Path(run_dir)
    if not (path / "run.json").exists():
        raise EvalkitError(
            f"{path} is not a run folder (no run.json); did you mean `evalkit run {path} ...`?"
        )
    check_counts(limit, batch_size)
    shard, team = _team(shard)
    if rescore and shard.world_size > 1 and team is None:
        raise EvalkitError(RESCORE_ALONE)  # independent shards: nobody knows when to commit
    with distributed.reporting(team):
        run = Run(path)
        info = run.info()
        data_dir = remembered_data_dir(info, data_dir)
        bench = load_benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
        made_from = (info.get("generation") or {}).get("data")
        if made_from is not None:
            from evalkit.runs import data_fingerprint

            if data_fingerprint(bench.samples()) != made_from:
                raise EvalkitError(
                    f"the {bench.name} data changed since the images of {path} were made; "
                    "run `evalkit run` again (changed data gets a run folder of its own)"
                )
        selected = bench.samples()[: limit if limit is not None else info.get("limit")]
        samples = shard.select(selected)
        if info["generation"].get("srr"):
            from evalkit.srr import pending_srr

            if left := pending_srr(run, bench, samples):
                raise EvalkitError(
                    f"SRR unfinished for {len(left)} images; re-run `evalkit run ... --srr K` first"
                )
        judge_choice = JudgeChoice(judge, judge_url, dict(judge_options or {}), allow_download)
        check_judge(judge_choice)
        check_judge_required(bench, judge_choice)
        check_before_work(bench, samples, info.get("model", ""), {}, run.root, True,
                          dict(score_options or {}), judge_choice, None)  # fmt: skip
        if team is not None:
            team.meet(f"{run.root.parent.name}/{run.root.name}")
            show_progress = show_progress and team.rank == 0
        planned = bench.samples()[: info.get("limit")]
        result = EvalResult(run.root, bench.name, bench.protocol, info.get("model", ""),
                            rank=shard.rank, world_size=shard.world_size)  # fmt: skip
        team_rescore = team is not None and rescore
        with run.lock("evalkit score", shard=shard, exclusive=rescore):  # a team rescore: its ranks together
            hash_ = score_stage(
                run, bench, samples, with_device(bench, dict(score_options or {}), device), shard,
                batch_size, rescore, judge_choice, show_progress, retry_failed,
                team.beat if team is not None else _no_beat, commit=team is None,
            )  # fmt: skip
            if team is None and shard.world_size == 1:
                result.summary = summarize_run(run, bench, planned)
            elif team_rescore:
                result.summary = _committed_summary(team, run, bench, selected, planned, hash_, True)
        if team is not None and not team_rescore:
            result.summary = _merged_summary(team, run, bench, planned, True)
    return result


def merge_run(run_dir: Path | str, *, data_dir: Path | str | None = None) -> tuple[int, EvalResult]:
    """Merge the per-rank records of a sharded run and summarize it; returns (records merged, result)."""
    from evalkit.runs import Run

    run = Run(Path(run_dir))
    info = run.info()
    data_dir = remembered_data_dir(info, data_dir)
    bench = load_benchmark(info["protocol"], info["protocol"], data_dir, info.get("bench_options"))
    with run.lock("evalkit merge", exclusive=True):
        n = run.merge_shards()
        summary = summarize_run(run, bench, bench.samples()[: info.get("limit")])
    return n, EvalResult(run.root, bench.name, bench.protocol, info.get("model", ""), summary)

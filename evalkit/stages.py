"""The stages `evalkit.evaluate` runs on a run folder: generate -> (SRR refine) -> score -> summarize.

Each stage loads its model, refiner, judge or scorer only when it has work left, so a finished run loads
nothing; `beat` is called after every batch (a distributed run's progress signal, see
`evalkit.distributed`), `show_progress` draws a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.console import err
from evalkit.console import progress as progress_bar
from evalkit.errors import EvalkitError

RESCORE_ALONE = (
    "--rescore needs one process or the ranks of one job started together (torchrun with MASTER_ADDR): "
    "independent RANK/WORLD_SIZE shards cannot commit it; unset RANK/WORLD_SIZE or use torchrun"
)


def judge_cache_path(run_root: Path) -> Path:
    """The run's judge reply cache. SQLite's WAL needs every writer on one host, so the nodes of a
    multi-node job (torchrun's LOCAL_WORLD_SIZE < WORLD_SIZE) keep one file each."""
    import os
    import socket

    world, local = os.environ.get("WORLD_SIZE", ""), os.environ.get("LOCAL_WORLD_SIZE", "")
    if world.isdigit() and local.isdigit() and int(local) < int(world):
        return Path(run_root) / f"judge_cache.{socket.gethostname()}.sqlite"
    return Path(run_root) / "judge_cache.sqlite"


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
            self.spec, url=self.url, cache_path=judge_cache_path(run_root), **self.options, **extra
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


Beat = Callable[[], None]


def _no_beat() -> None:
    pass


def _bar(show: bool, description: str, total: int, beat: Beat = _no_beat):
    """(context, advance): a progress bar (or nothing) whose advance also beats."""
    import contextlib

    bar, advance = progress_bar(description, total) if show else (contextlib.nullcontext(), None)

    def step(n: int) -> None:
        if advance is not None:
            advance(n)
        beat()

    return bar, step


def checked_scorer_config(bench, score_options: dict[str, Any]) -> dict[str, Any]:
    """The scorer config; a bad --score-option value is one line instead of a traceback."""
    try:
        return bench.scorer_config(**score_options)
    except EvalkitError:
        raise
    except (TypeError, ValueError) as e:
        raise EvalkitError(f"bad --score-option for {bench.name}: {e}") from None


def generate_stage(run, bench, samples, make_generator, *, seed: int, batch_size: int, show_progress=True,
                   beat: Beat = _no_beat):  # fmt: skip
    """Make missing images; returns the loaded generator (None when nothing was missing)."""
    from evalkit import pipeline

    todo = pipeline.pending_images(run, bench, samples)
    if not todo:
        pipeline.write_derived_images(run, bench, samples)
        if show_progress:
            err.print(f"[dim]generate: all {len(samples) * bench.images_per_sample} images present[/dim]")
        return None
    beat()
    generator = make_generator()  # load before the progress bar
    beat()
    run.write_info({"generator": generator.config()})
    bar, advance = _bar(show_progress, "generate", len(todo), beat)
    with bar:
        pipeline.generate(
            run, bench, samples, lambda: generator, global_seed=seed, batch_size=batch_size, progress=advance
        )
    return generator


def srr_stage(run, bench, samples, make_refiner, srr: SRROptions, *, seed, make_oracle_scorer=None,
              batch_size: int = 8, show_progress: bool = True, beat: Beat = _no_beat):  # fmt: skip
    """Refine a run's images (after generate, before score); loads nothing when every image is done."""
    from evalkit import srr as srr_module

    todo = srr_module.pending_srr(run, bench, samples)
    if srr.rounds <= 0 or not todo:
        return None
    beat()
    refiner = make_refiner()
    beat()
    from evalkit import pipeline

    needs = {"refine", "self_check"} if srr.gate == "self" and not srr.judge else {"refine"}
    pipeline.check_generator(refiner, bench, needs)
    reward = None
    if srr.gate == "self" and srr.judge:
        from evalkit.rewards.factory import build_reward

        options = {"judge": srr.judge, "judge_url": srr.judge_url, "questions": srr.questions}
        reward = build_reward("dvreward", {**options, "cache_path": judge_cache_path(run.root)})
    oracle = make_oracle_scorer() if srr.gate == "oracle" and make_oracle_scorer is not None else None
    bar, advance = _bar(show_progress, f"srr x{srr.rounds} ({srr.gate})", len(todo), beat)
    with bar:
        stats = srr_module.refine_run(
            run, bench, samples, refiner, rounds=srr.rounds, gate=srr.gate, threshold=srr.threshold,
            reward=reward, oracle_scorer=oracle, global_seed=seed, batch_size=batch_size, progress=advance,
        )  # fmt: skip
    if stats.abstained:  # loud: these images stay unrefined because the gate could not decide
        err.print(
            f"[yellow]srr: the {srr.gate} gate could not decide {stats.abstained} time(s) (no signal); "
            "those images were left as they were (see 'undecided' in samples/*/*.r*.json)[/yellow]"
        )
    return stats


def scorer_hash(bench, score_options: dict[str, Any], judge: JudgeChoice) -> tuple[dict[str, Any], str]:
    """(scorer config, its hash): what keys a run's records (scorer options and the judge)."""
    from evalkit.runs import stable_hash

    config = checked_scorer_config(bench, score_options)
    if judge.spec:
        config["judge"] = judge.config()
    return config, stable_hash(config)


def score_stage(run, bench, samples, score_options, shard, batch_size, rescore: bool, judge: JudgeChoice,
                show_progress: bool = True, retry_failed: bool = True, beat: Beat = _no_beat,
                commit: bool = True) -> str:  # fmt: skip
    """Score images without a current record (and failed ones, with `retry_failed`); returns the
    scorer hash.

    `rescore` is transactional: new records are staged in records.rescore-<hash>.jsonl (one file per
    rank of a torchrun job; an interrupted rescore resumes from all of them, whatever world size wrote
    them) and replace the old ones in one rename once every image has one; until then the old records,
    summary and report stay in force. With `commit=False` (a rank of a team) the staged records are
    left for rank 0's `commit_rescore_stage` once every rank is done.
    """
    from evalkit import pipeline

    config, scorer_hash_ = scorer_hash(bench, score_options, judge)
    target = None
    if rescore:
        target = run.rescore_path(scorer_hash_, shard)
        todo = pipeline.pending_records(
            run, bench, samples, scorer_hash_, retry_failed=retry_failed,
            records=run.staged_records(scorer_hash_),
        )  # fmt: skip
    else:
        pipeline.check_scorer(run, scorer_hash_)
        todo = pipeline.pending_records(run, bench, samples, scorer_hash_, retry_failed=retry_failed)
    if todo:
        beat()
        if judge.spec:
            score_options = {**score_options, "judge": judge.load(run.root)}
        scorer = bench.make_scorer(**score_options)
        beat()
        run.write_info({"scoring": config, "scorer": scorer.config()})
        bar, advance = _bar(show_progress, "score", len(todo), beat)
        with bar:
            pipeline.score(
                run, bench, samples, lambda: scorer, config, shard=shard, batch_size=batch_size,
                progress=advance, retry_failed=retry_failed, target=target,
            )  # fmt: skip
    elif show_progress:
        err.print("[dim]score: every image already has a record[/dim]")
    if rescore and commit:
        commit_rescore_stage(run, bench, samples, scorer_hash_)
    return scorer_hash_


def commit_rescore_stage(run, bench, samples, scorer_hash_: str) -> None:
    """Commit a rescore whose staged records (of any process or rank) cover every image of `samples`;
    a gap (a rank that did not finish) is an error and the old records stay in force."""
    from evalkit import pipeline

    if not run.rescore_files(scorer_hash_):
        return
    staged = run.staged_records(scorer_hash_)
    left = pipeline.pending_records(run, bench, samples, scorer_hash_, retry_failed=False, records=staged)
    if left:
        raise EvalkitError(
            f"the rescore of {run.root} has no record yet for {len(left)} image(s) (first: "
            f"{left[0][0].id}/{left[0][1]}); the old records stay in force: re-run the same command to finish it"
        )
    run.commit_rescore(scorer_hash_)


def summarize_run(run, bench, samples) -> dict[str, Any]:
    """The benchmark's summary, plus what an SRR gate did (images refined, kept, abstentions)."""
    from evalkit import pipeline

    summary = pipeline.summarize(run, bench, samples)
    if (run.info().get("generation") or {}).get("srr"):
        from evalkit.srr import srr_counts

        summary["srr"] = srr_counts(run, bench, samples)
        run.write_summary(summary)
    return summary

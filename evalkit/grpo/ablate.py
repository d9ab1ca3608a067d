"""The reward ablation behind `evalkit ablate-reward`: one GRPO training per reward, then the base model and
each LoRA evaluated with `evalkit.evaluate` (TIIF-Bench short and long descriptions, GenEval) and written as
the paper's reward-ablation table.

Training, evaluation runs and the table are all resumable: finished trainings and evaluations are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.paths import manifest_dir


@dataclass(frozen=True)
class AblationEval:
    """One evaluation of the table: a protocol, the table cells it fills, and scorer options it takes."""

    protocol: str
    cells: dict[str, str]  # ablation column key -> the benchmark's official table column
    score_options: tuple[str, ...] = ()  # which of the ablation's scorer settings apply


EVALS = {
    "tiif": AblationEval("tiif", {"tiif_short": "Overall (short)", "tiif_long": "Overall (long)"}),
    "geneval": AblationEval("geneval", {"geneval": "Overall"}, score_options=("detector",)),
}


def spec_path(backbone: str) -> Path:
    path = manifest_dir("reward_ablation") / f"{backbone}.yaml"
    if not path.exists():
        from evalkit.errors import did_you_mean

        raise did_you_mean("ablation backbone", backbone, [p.stem for p in path.parent.glob("*.yaml")])
    return path


def make_evaluator(
    backbone: str,
    evals: list[str],
    *,
    data_dir: Path,
    runs_dir: Path,
    judge: str | None,
    judge_url: str | None,
    detector: str,
    limit: int | None,
    seed: int,
    batch_size: int,
    eval_options: dict[str, dict[str, Any]] | None = None,
) -> Callable[[str, Path | None], dict[str, float | None]]:
    """evaluate(row, lora) -> {tiif_short, tiif_long, geneval}: `evalkit.evaluate` per protocol, the
    generator loaded once per row. `eval_options` adds scorer options per evaluation (e.g. the tiny spec caps
    the TIIF judge's reply length)."""
    from evalkit.evaluator import evaluate
    from evalkit.registry import lookup
    from evalkit.runs import stable_hash

    scorer_settings = {"detector": detector}

    def evaluate_row(row: str, lora: Path | None) -> dict[str, float | None]:
        options = {"lora": str(lora)} if lora else {}
        loaded: dict[str, Any] = {}
        result: dict[str, float | None] = {}
        for name in evals:
            spec = EVALS[name]
            judged = lookup("benchmarks", spec.protocol.split("@")[0]).load().needs_judge
            outcome = evaluate(
                spec.protocol, backbone, model_options=options, limit=limit, seed=seed, runs_dir=runs_dir,
                data_dir=data_dir, judge=judge if judged else None, judge_url=judge_url if judged else None,
                score_options={**{k: scorer_settings[k] for k in spec.score_options},
                               **(eval_options or {}).get(name, {})},
                batch_size=batch_size,
                generator=loaded.get("generator"), show_progress=False,
            )  # fmt: skip
            loaded["generator"] = outcome.generator or loaded.get("generator")
            table = outcome.table
            result.update({key: table.get(column) for key, column in spec.cells.items()})
        stable_hash(result)  # fails loudly on a non-serialisable value before it is cached
        return result

    return evaluate_row


def ablate(
    backbone: str,
    *,
    rewards: list[str] | None,
    steps: int | None,
    evals: list[str],
    prompts_file: Path | None,
    out_dir: Path,
    data_dir: Path,
    judge_spec: str | None,
    judge_url: str | None,
    detector: str | None,
    limit: int | None,
    seed: int = 42,
    batch_size: int = 4,
):
    """Run (or resume) the whole ablation; returns the AblationResult with Markdown and LaTeX tables."""
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.grpo.ablation import load_ablation_spec, run_reward_ablation
    from evalkit.grpo.launch import load_pipeline
    from evalkit.rewards.factory import build_reward

    unknown = [e for e in evals if e not in EVALS]
    if unknown:
        raise EvalkitError(f"unknown evaluation '{unknown[0]}' (use {', '.join(EVALS)})")
    spec = load_ablation_spec(spec_path(backbone))
    if rewards:
        for name in rewards:
            if name not in {r.name for r in spec.rewards}:
                from evalkit.errors import did_you_mean

                raise did_you_mean("reward", name, [r.name for r in spec.rewards])
    tiny = backbone.startswith("tiny")
    if prompts_file is None:
        if not tiny:
            raise EvalkitError("pass --prompts FILE (training prompts, .txt or .jsonl) for a real backbone")
        from evalkit.paths import DEMO_DATA_DIR

        prompts_file = DEMO_DATA_DIR / "geneval" / "evaluation_metadata.jsonl"  # pipeline check only
    prompts = read_prompts(prompts_file)
    footnotes = []
    if limit is None and spec.eval_limit is not None:
        limit = spec.eval_limit
        footnotes.append(
            f"partial evaluation: the first {limit} samples of each benchmark per row "
            f"(eval.limit in {spec_path(backbone).name}; pass --limit to change it)"
        )
    elif limit is not None:
        footnotes.append(f"partial evaluation: the first {limit} samples of each benchmark per row (--limit)")
    for name, values in spec.eval_options.items():
        if name in evals:
            settings = ", ".join(f"{k}={v}" for k, v in values.items())
            footnotes.append(
                f"{name} scored with {settings} (eval.score_options in {spec_path(backbone).name})"
            )
    if tiny:
        footnotes.append(
            "tiny random-weight backbone, rewards and judge: the numbers only check the pipeline"
        )
    from evalkit.rewards.checks import check_reward

    for run in spec.rewards:  # a reward that cannot work is refused before any training starts
        if not rewards or run.name in rewards:
            check_reward(run.name, run.scorer, prompts=[(p, {}) for p in prompts])
    judge_spec = judge_spec or ("tiny" if tiny else None)
    if "tiif" in evals and not judge_spec:
        raise EvalkitError(
            "TIIF-Bench needs a judge: --judge hf:<id> or --judge openai:<model> --judge-url URL"
        )
    evaluate = make_evaluator(
        backbone,
        evals,
        data_dir=data_dir,
        runs_dir=out_dir / "eval",
        judge=judge_spec,
        judge_url=judge_url,
        detector=detector or ("tiny" if tiny else "mmdet"),
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        eval_options=spec.eval_options,
    )

    def pipeline_factory():
        if backbone == "sd35m":
            from evalkit.checkpoints import resolve

            return load_pipeline(str(resolve("sd35m")))
        return load_pipeline(backbone)

    return run_reward_ablation(
        spec,
        pipeline_factory,
        build_reward,
        evaluate,
        prompts,
        out_dir,
        rewards=rewards,
        steps=steps,
        footnotes=footnotes,
    )

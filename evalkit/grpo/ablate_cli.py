"""`evalkit ablate-reward`: one GRPO training per reward, then the base model and each LoRA evaluated on
TIIF-Bench (short and long descriptions) and GenEval, written as the paper's reward-ablation table.

Training, evaluation runs and the table are all resumable: finished trainings and evaluations are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from evalkit.cli_options import DataDirOpt, DetectorOpt, JudgeOpt, JudgeUrlOpt, LimitOpt
from evalkit.errors import EvalkitError
from evalkit.paths import PROJECT_ROOT

EVALS = ("tiif", "geneval")


def spec_path(backbone: str) -> Path:
    path = PROJECT_ROOT / "reward_ablation" / f"{backbone}.yaml"
    if not path.exists():
        from evalkit.errors import did_you_mean

        raise did_you_mean("ablation backbone", backbone, [p.stem for p in path.parent.glob("*.yaml")])
    return path


def read_prompts(path: Path) -> list[str]:
    """One prompt per line (.txt) or a `prompt` key per JSON line (.jsonl, e.g. GenEval metadata)."""
    import json

    if not path.exists():
        raise EvalkitError(f"no such prompts file: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(line)["prompt"] for line in lines]
    return lines


def make_evaluator(
    backbone: str,
    evals: list[str],
    *,
    data_dir: Path,
    runs_dir: Path,
    judge: Callable[[Path], Any] | None,
    judge_config: dict[str, Any] | None,
    detector: str,
    limit: int | None,
    seed: int,
    batch_size: int,
) -> Callable[[str, Path | None], dict[str, float | None]]:
    """evaluate(row, lora) -> {tiif_short, tiif_long, geneval} through the same stages as `evalkit run`."""
    from evalkit import pipeline, registry
    from evalkit.benchmarks.geneval import GenEval
    from evalkit.benchmarks.tiif import TIIF
    from evalkit.generators.base import ModelSpec
    from evalkit.runs import Run, stable_hash

    def evaluate(row: str, lora: Path | None) -> dict[str, float | None]:
        options = {"lora": str(lora)} if lora else {}
        spec = ModelSpec(name=backbone, options=options)
        loaded: dict[str, Any] = {}

        def generator():
            if "g" not in loaded:
                loaded["g"] = registry.lookup("models", backbone).load()(spec)
            return loaded["g"]

        result: dict[str, float | None] = {}
        for name in evals:
            if name == "tiif":
                bench = TIIF(data_dir, protocol="tiif")
                score_options: dict[str, Any] = {}
                config = {"judge": judge_config}
            else:
                bench = GenEval(data_dir, protocol="geneval")
                score_options = {"detector": detector}
                config = bench.scorer_config(**score_options)
            samples = bench.samples()[:limit]
            run = Run.for_config(
                runs_dir, bench.protocol, f"{backbone}-{row}", {"lora": str(lora), "seed": seed}
            )
            run.write_info(
                {"benchmark": bench.name, "protocol": bench.protocol, "model": f"{backbone} ({row})"}
            )
            pipeline.generate(run, bench, samples, generator, global_seed=seed, batch_size=batch_size)

            def scorer(bench=bench, score_options=score_options, run=run):
                extra = {"judge": judge(run.root)} if bench.name == "tiif" else {}
                return bench.make_scorer(**score_options, **extra)

            pipeline.score(run, bench, samples, scorer, config, batch_size=batch_size)
            table = pipeline.summarize(run, bench, samples)["table"]
            if name == "tiif":
                result["tiif_short"] = table.get("Overall (short)")
                result["tiif_long"] = table.get("Overall (long)")
            else:
                result["geneval"] = table.get("Overall")
        stable_hash(result)  # fails loudly on a non-serialisable value before it is cached
        return result

    return evaluate


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
    from evalkit.grpo.ablation import load_ablation_spec, run_reward_ablation
    from evalkit.grpo.launch import build_scorer, load_pipeline

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
        prompts_file = data_dir / "geneval" / "evaluation_metadata.jsonl"  # pipeline check only
    prompts = read_prompts(prompts_file)
    judge_spec = judge_spec or ("tiny" if tiny else None)
    if "tiif" in evals and not judge_spec:
        raise EvalkitError(
            "TIIF-Bench needs a judge: --judge hf:<id> or --judge openai:<model> --judge-url URL"
        )

    def judge(run_root: Path):
        from evalkit.judges import load_judge

        return load_judge(judge_spec, url=judge_url, cache_path=run_root / "judge_cache.sqlite")

    evaluate = make_evaluator(
        backbone,
        evals,
        data_dir=data_dir,
        runs_dir=out_dir / "eval",
        judge=judge,
        judge_config={"spec": judge_spec, "url": judge_url},
        detector=detector or ("tiny" if tiny else "mmdet"),
        limit=limit,
        seed=seed,
        batch_size=batch_size,
    )

    def pipeline_factory():
        if backbone == "sd35m":
            from evalkit.checkpoints import resolve

            return load_pipeline(str(resolve("sd35m")))
        return load_pipeline(backbone)

    return run_reward_ablation(
        spec,
        pipeline_factory,
        build_scorer,
        evaluate,
        prompts,
        out_dir,
        rewards=rewards,
        steps=steps,
    )


def ablate_reward(
    backbone: Annotated[str, typer.Option(help="sd35m, or tiny-sd3 (offline, minutes)")] = "sd35m",
    rewards: Annotated[
        str | None, typer.Option(help="comma-separated subset, e.g. pickscore,dvreward")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="training epochs per reward (overrides the config)")
    ] = None,
    evals: Annotated[str, typer.Option("--eval", help="comma-separated: tiif,geneval")] = "tiif,geneval",
    prompts: Annotated[Path | None, typer.Option(help="training prompts (.txt or .jsonl)")] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for trainings, evaluations and tables")
    ] = Path("runs/ablate-reward"),
    data_dir: DataDirOpt = None,
    judge: JudgeOpt = None,
    judge_url: JudgeUrlOpt = None,
    detector: DetectorOpt = None,
    limit: LimitOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="md or latex")] = "md",
) -> None:
    """Train SD3 with GRPO once per reward, evaluate base + each LoRA, and print the ablation table."""
    from evalkit import paths
    from evalkit.grpo.ablate_cli import ablate

    result = ablate(
        backbone,
        rewards=[r.strip() for r in rewards.split(",")] if rewards else None,
        steps=steps,
        evals=[e.strip() for e in evals.split(",") if e.strip()],
        prompts_file=prompts,
        out_dir=out_dir / backbone,
        data_dir=paths.data_dir(data_dir),
        judge_spec=judge,
        judge_url=judge_url,
        detector=detector,
        limit=limit,
    )
    print(result.latex if fmt == "latex" else result.markdown)

"""`evalkit ablate-reward`: parse the options and call `evalkit.grpo.ablate.ablate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.options import DataDirOpt, DetectorOpt, JudgeOpt, JudgeUrlOpt, LimitOpt


def ablate_reward(
    backbone: Annotated[
        str, typer.Option(help="sd35m or bagel; tiny-sd3 / tiny-bagel run offline in minutes")
    ] = "sd35m",
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
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="trainer setting for every reward: key=value (BAGEL: preset keys)"),
    ] = None,
    reward_option: Annotated[
        list[str] | None,
        typer.Option(help="one reward's scorer option: NAME.KEY=VALUE (e.g. unifiedreward.judge_url=URL)"),
    ] = None,
    base: Annotated[
        Path | None, typer.Option(help="backbone weights folder (default: checkpoints/<backbone>)")
    ] = None,
) -> None:
    """Train once per reward (SD3: Flow-GRPO, BAGEL: AlphaGRPO), evaluate base + each LoRA, print the table.

    Under torchrun / accelerate launch every rank trains and evaluates its shard; rank 0 writes the
    folders and prints the table."""
    from evalkit import paths
    from evalkit.grpo.ablate import ablate

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
        overrides=set_ or [],
        reward_options=reward_option or [],
        base=base,
    )
    if paths_rank() == 0:
        print(result.latex if fmt == "latex" else result.markdown)


def paths_rank() -> int:
    """This process's rank under torchrun (0 otherwise): only rank 0 prints the table."""
    from evalkit.runs import Shard

    return Shard.from_env().rank


def register(app: typer.Typer) -> None:
    app.command("ablate-reward")(ablate_reward)

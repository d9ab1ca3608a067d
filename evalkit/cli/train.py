"""`evalkit train`: GRPO on a diffusers SD3 model (also `python -m evalkit.grpo.launch` under accelerate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.options import JudgeOpt, JudgeUrlOpt

train_app = typer.Typer(help="Train a LoRA: Flow-GRPO on SD3 (options below) or `train alphagrpo` on BAGEL.")


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    prompts: Annotated[
        Path | None, typer.Option(help="training prompts: .txt (one per line) or .jsonl ('prompt')")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of GRPOConfig fields")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override one GRPOConfig field: key=value (repeatable)")
    ] = None,
    reward: Annotated[
        list[str] | None, typer.Option(help="name[=weight], repeatable (see `evalkit ls rewards`)")
    ] = None,
    eval_prompts: Annotated[Path | None, typer.Option(help="evaluation prompts (.txt or .jsonl)")] = None,
    model: Annotated[
        str | None, typer.Option(help="diffusers SD3 id/folder or tiny-sd3 (default: config)")
    ] = None,
) -> None:
    """Train a LoRA with Flow-GRPO and save it to <output_dir>/final/lora."""
    if ctx.invoked_subcommand is not None:
        return
    if prompts is None:
        from evalkit.errors import EvalkitError

        raise EvalkitError("evalkit train needs --prompts FILE (or: evalkit train alphagrpo --help)")
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.grpo.launch import parse_config
    from evalkit.grpo.launch import train as run_training

    settings = parse_config(config, set_ or [], reward or [])
    texts = read_prompts(prompts)
    history = run_training(
        settings, texts, eval_prompts=read_prompts(eval_prompts) if eval_prompts else None, model=model
    )
    print(f"{len(history)} epoch(s) trained; LoRA in {Path(settings.output_dir) / 'final' / 'lora'}")


@train_app.command("alphagrpo")
def alphagrpo(
    prompts: Annotated[
        Path, typer.Option(help="AlphaGRPO-format .jsonl (prompt + questions per line) or .txt prompts")
    ],
    preset: Annotated[
        str, typer.Option(help="official preset: alphagrpo_t2iThink, alphagrpo_reflect, ...")
    ] = "alphagrpo_reflect",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a preset key: key=value (repeatable)")
    ] = None,
    model: Annotated[str, typer.Option(help="BAGEL folder (official layout) or tiny-bagel")] = "tiny-bagel",
    judge: JudgeOpt = None,
    judge_url: JudgeUrlOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="run folder")] = Path("runs/alphagrpo"),
    steps: Annotated[int | None, typer.Option(help="optimizer steps (default: num_epochs)")] = None,
    max_think_tokens: Annotated[int, typer.Option(help="think-text token limit (official 1024)")] = 1024,
    text_loss_compat: Annotated[
        str, typer.Option(help="intended, or official (the B x B outer-product text loss)")
    ] = "intended",
    resume: Annotated[Path | None, typer.Option(help="checkpoint folder to resume from")] = None,
    mix_t2i_compat: Annotated[
        str,
        typer.Option(help="mix_t2i: intended, or official (init reward + think format)"),
    ] = "intended",
    per_sample_seeds: Annotated[
        bool,
        typer.Option(help="each sample draws its own noise: the same numbers on any number of processes"),
    ] = False,
) -> None:
    """AlphaGRPO on BAGEL: GRPO over think text + image (tasks t2i and reflect), LoRA on both experts."""
    from evalkit.grpo.alphagrpo.launch import train_alphagrpo

    final, history = train_alphagrpo(
        preset,
        prompts,
        overrides=set_ or [],
        model=model,
        judge=judge,
        judge_url=judge_url,
        out_dir=out_dir,
        steps=steps,
        max_think_tokens=max_think_tokens,
        text_loss_compat=text_loss_compat,
        resume=resume,
        per_sample_seeds=per_sample_seeds,
        mix_t2i_compat=mix_t2i_compat,
    )
    last = history[-1] if history else {}
    print(
        f"{len(history)} step(s) trained; reward {last.get('reward_mean', float('nan')):.4f}; adapter in {final}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")

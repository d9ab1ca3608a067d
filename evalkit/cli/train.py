"""`evalkit train`: GRPO on a diffusers SD3 model (also `python -m evalkit.grpo.launch` under accelerate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    prompts: Annotated[Path, typer.Option(help="training prompts: .txt (one per line) or .jsonl ('prompt')")],
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
    from evalkit.dvreward.decompose import read_prompts
    from evalkit.grpo.launch import parse_config
    from evalkit.grpo.launch import train as run_training

    settings = parse_config(config, set_ or [], reward or [])
    texts = read_prompts(prompts)
    history = run_training(
        settings, texts, eval_prompts=read_prompts(eval_prompts) if eval_prompts else None, model=model
    )
    print(f"{len(history)} epoch(s) trained; LoRA in {Path(settings.output_dir) / 'final' / 'lora'}")


def register(app: typer.Typer) -> None:
    app.command()(train)

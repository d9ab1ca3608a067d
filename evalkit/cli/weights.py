"""`evalkit weights fetch NAME`: the one way evalkit downloads weights (never implicitly)."""

from __future__ import annotations

import typer

from evalkit.console import out

weights_app = typer.Typer(no_args_is_help=True, help="Model weights: list manifests, fetch on request.")


@weights_app.command("ls")
def weights_ls() -> None:
    """Every checkpoint manifest (checkpoints/*.yaml) and whether its weights are on this machine."""
    from evalkit import checkpoints

    for name, spec in checkpoints.manifests().items():
        path = checkpoints.locate(name)
        state = str(path) if path else "missing"
        out.print(f"{name:<24} {spec.get('model_id') or spec.get('source', '')}  {state}", soft_wrap=True)


@weights_app.command("fetch")
def weights_fetch(
    name: str = typer.Argument(help="a manifest name (`evalkit weights ls`) or a hub id org/name"),
) -> None:
    """Download weights from the Hugging Face hub: a manifest into checkpoints/<name>/, a hub id into the
    Hugging Face cache (what hf: judges read)."""
    from evalkit import checkpoints

    path = checkpoints.fetch(name)
    out.print(f"{name}: {path}", markup=False)

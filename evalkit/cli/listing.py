"""`evalkit ls` and `evalkit doctor`: what is registered and what is installed (no torch for `ls`)."""

from __future__ import annotations

from typing import Annotated

import typer

from evalkit.cli.options import DataDirOpt
from evalkit.console import out


def ls(
    kind: Annotated[str | None, typer.Argument(help="models, benchmarks, judges or rewards")] = None,
    name: Annotated[str | None, typer.Argument(help="with `models`: one model's --option keys")] = None,
) -> None:
    """List registered models, benchmarks (with protocols), judges and rewards; `ls models NAME` lists a
    model's options with their help."""
    from rich.table import Table

    from evalkit import data, registry
    from evalkit.errors import EvalkitError, did_you_mean

    if name is not None:
        if kind != "models":
            raise EvalkitError(f"options are listed per model: evalkit ls models {name}")
        _model_options(name)
        return

    kinds = [kind] if kind else list(registry.KINDS)
    for k in kinds:
        if k not in registry.KINDS:
            raise did_you_mean("kind", k, list(registry.KINDS))
        table = Table(title=k, show_header=True)
        table.add_column("name")
        table.add_column("description")
        manifests = data.manifests() if k == "benchmarks" else {}
        for name, entry in registry.entries(k).items():
            summary = entry.summary
            if name in manifests:  # a benchmark without a manifest (e.g. a plugin's toy) has no protocols
                summary += " (protocols: " + ", ".join(manifests[name]["protocols"]) + ")"
            table.add_row(name, summary)
        out.print(table)


def _model_options(name: str) -> None:
    import dataclasses

    from rich.table import Table

    from evalkit import registry
    from evalkit.registry import _resolve

    entry = registry.lookup("models", name)
    if entry.options is None:
        out.print(f"{name}: no declared options")
        return
    table = Table(title=f"{name} options (--option key=value)", show_header=True)
    for column in ("option", "type", "help"):
        table.add_column(column)
    for field in dataclasses.fields(_resolve(entry.options)):
        table.add_row(field.name, str(field.type), field.metadata.get("help", ""))
    out.print(table)


def doctor(data_dir: DataDirOpt = None) -> None:
    """Check torch/CUDA, optional packages, weights and benchmark data."""
    from evalkit.doctor import checks

    failed = False
    for name, ok, detail in checks(data_dir):
        mark = "[green]ok[/green]" if ok else "[yellow]--[/yellow]"
        out.print(f"{mark}  {name}: {detail}", soft_wrap=True)
        failed |= ok is False and name.startswith("torch")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command()(doctor)

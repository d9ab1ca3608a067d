"""`evalkit ls` and `evalkit doctor`: what is registered and what is installed (no torch for `ls`)."""

from __future__ import annotations

from typing import Annotated

import typer

from evalkit.cli.options import DataDirOpt
from evalkit.console import out


def ls(
    kind: Annotated[str | None, typer.Argument(help="models, benchmarks, judges or rewards")] = None,
) -> None:
    """List registered models, benchmarks (with protocols), judges and rewards."""
    from rich.table import Table

    from evalkit import data, registry
    from evalkit.errors import did_you_mean

    kinds = [kind] if kind else list(registry.KINDS)
    for k in kinds:
        if k not in registry.KINDS:
            raise did_you_mean("kind", k, list(registry.KINDS))
        table = Table(title=k, show_header=True)
        table.add_column("name")
        table.add_column("description")
        for name, entry in registry.KINDS[k].items():
            summary = entry.summary
            if k == "benchmarks":
                summary += " (protocols: " + ", ".join(data.manifest(name)["protocols"]) + ")"
            table.add_row(name, summary)
        out.print(table)


def doctor(data_dir: DataDirOpt = None) -> None:
    """Check torch/CUDA, optional packages, weights and benchmark data."""
    from evalkit.doctor import checks

    failed = False
    for name, ok, detail in checks(data_dir):
        mark = "[green]ok[/green]" if ok else "[yellow]--[/yellow]"
        out.print(f"{mark}  {name}: {detail}")
        failed |= ok is False and name.startswith("torch")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command()(doctor)

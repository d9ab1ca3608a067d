"""`evalkit view`: the static HTML sample viewer over run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.console import out


def view(
    runs: Annotated[
        list[Path],
        typer.Argument(help="run folders, or folders holding runs (e.g. runs/, ablate-reward output)"),
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="report folder; keep it beside the runs (images are linked relatively)"),
    ] = Path("reports/view"),
    title: Annotated[str, typer.Option(help="page title")] = "evalkit sample viewer",
) -> None:
    """A static, self-contained HTML report: summary tables, every sample's images side by side per run,
    SRR rounds, judge answers, detections, filters and search. Opens from file://."""
    from evalkit.report.view import build_report

    page = build_report(runs, out_dir, title=title)
    out.print(str(page))


def register(app: typer.Typer) -> None:
    app.command()(view)

"""`evalkit report`: a paper-style table over run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders (rows of the table)")],
    fmt: Annotated[str, typer.Option("--format", help="md, latex or csv")] = "md",
    baseline: Annotated[Path | None, typer.Option(help="a run folder to show signed deltas against")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="write to a file instead of stdout")] = None,
) -> None:
    """A paper-style table: rows = runs, columns = official benchmark columns, protocol in a footnote."""
    from evalkit.report.tables import build_table, render

    text = render(build_table(run_dirs, baseline=baseline), fmt)
    if output:
        output.write_text(text)
    else:
        print(text)


def register(app: typer.Typer) -> None:
    app.command()(report)

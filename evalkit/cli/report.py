"""`evalkit report`: a paper-style table over run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.errors import EvalkitError

FORMATS = ("md", "latex", "csv")


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders (one row per run configuration)")],
    fmt: Annotated[str, typer.Option("--format", help="md, latex or csv")] = "md",
    baseline: Annotated[
        list[Path] | None,
        typer.Option(help="run folder to show signed deltas against (one per protocol; repeatable)"),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="row names: one per run folder in order, or RUN_DIR=NAME (repeatable)"),
    ] = None,
    ci: Annotated[
        bool, typer.Option("--ci", help="bootstrap 95% intervals (and paired p-values against --baseline)")
    ] = False,
    resamples: Annotated[int, typer.Option(help="bootstrap resamples for --ci")] = 1000,
    ci_seed: Annotated[
        int, typer.Option(help="bootstrap seed for --ci (fixed: tables are reproducible)")
    ] = 0,
    output: Annotated[Path | None, typer.Option("--output", help="write to a file instead of stdout")] = None,
) -> None:
    """A paper-style table: rows = runs, columns = official benchmark columns, footnotes once per table."""
    from evalkit.console import err
    from evalkit.report.tables import build_table, render

    if fmt not in FORMATS:
        raise EvalkitError(f"unknown format '{fmt}' (use {', '.join(FORMATS[:-1])} or {FORMATS[-1]})")
    if resamples < 1:
        raise EvalkitError(f"--resamples must be at least 1, got {resamples}")
    table = build_table(run_dirs, baseline=baseline, labels=label, ci=ci, resamples=resamples, seed=ci_seed)
    for warning in table.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    text = render(table, fmt)
    if output:
        output.write_text(text)
    else:
        print(text)


def register(app: typer.Typer) -> None:
    app.command()(report)

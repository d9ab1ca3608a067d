"""`evalkit plot radar|bars|srr|curves`: paper figures (PNG + PDF) from run and training folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.console import out

plot_app = typer.Typer(no_args_is_help=True, help="Paper figures (PNG and PDF) from runs and trainings.")

RunsArg = Annotated[list[Path], typer.Argument(help="run folders, or folders holding runs")]


def _stem(default: str) -> object:
    return typer.Option("--out", help=f"output path without suffix (default {default}); writes .png and .pdf")


def _runs(paths: list[Path]) -> list[Path]:
    from evalkit.report.view import find_runs

    return find_runs(paths)


def _done(paths: list[Path]) -> None:
    for path in paths:
        out.print(str(path))


@plot_app.command("radar")
def plot_radar(
    runs: RunsArg,
    stem: Annotated[Path, _stem("reports/figures/radar")] = Path("reports/figures/radar"),
    title: Annotated[str | None, typer.Option(help="figure title")] = None,
) -> None:
    """Radar chart: one polygon per model, one axis per benchmark (headline on a 0-100 scale)."""
    from evalkit.report.plots import headline_scores, radar

    _done(radar(headline_scores(_runs(runs)), stem, title=title))


@plot_app.command("bars")
def plot_bars(
    runs: RunsArg,
    stem: Annotated[Path, _stem("reports/figures/bars")] = Path("reports/figures/bars"),
    resamples: Annotated[int, typer.Option(help="bootstrap resamples for the 95% whiskers")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed (fixed: figures are reproducible)")] = 0,
    ylabel: Annotated[str, typer.Option(help="y axis label")] = "score",
) -> None:
    """Per-category bars of each run's table columns with bootstrap 95% CI whiskers."""
    from evalkit.errors import EvalkitError
    from evalkit.report.plots import category_bars, category_intervals

    if resamples < 1:
        raise EvalkitError(f"--resamples must be at least 1, got {resamples}")
    intervals = category_intervals(_runs(runs), resamples=resamples, seed=seed)
    _done(category_bars(intervals, stem, ylabel=ylabel))


@plot_app.command("srr")
def plot_srr(
    runs: RunsArg,
    stem: Annotated[Path, _stem("reports/figures/srr")] = Path("reports/figures/srr"),
) -> None:
    """Score after each SRR round (the gate's oracle verdict or reward), one line per run."""
    import json

    from evalkit.report.plots import run_label, srr_gain, srr_round_series

    series = {}
    for run_dir in _runs(runs):
        label = run_label(json.loads((run_dir / "run.json").read_text()))
        series[label if label not in series else f"{label} [{run_dir.name}]"] = srr_round_series(run_dir)
    _done(srr_gain(series, stem))


@plot_app.command("curves")
def plot_curves(
    train_dirs: Annotated[list[Path], typer.Argument(help="training output folders (with metrics.jsonl)")],
    stem: Annotated[Path, _stem("reports/figures/curves")] = Path("reports/figures/curves"),
    label: Annotated[
        list[str] | None, typer.Option(help="legend name per folder, in order (repeatable)")
    ] = None,
) -> None:
    """GRPO / AlphaGRPO training curves: rewards (mean and per reward model), KL and clip fraction."""
    from evalkit.errors import EvalkitError
    from evalkit.report.plots import training_curves

    if label and len(label) != len(train_dirs):
        raise EvalkitError(f"give one --label per folder ({len(train_dirs)}), got {len(label)}")
    _done(training_curves(train_dirs, stem, labels=label))

"""`evalkit data fetch|verify`: official benchmark files at pinned revisions, with checksums."""

from __future__ import annotations

import typer

from evalkit.cli.options import DataDirOpt
from evalkit.console import out

data_app = typer.Typer(no_args_is_help=True, help="Benchmark data: fetch and verify official files.")


@data_app.command("fetch")
def data_fetch(
    benchmark: str,
    data_dir: DataDirOpt = None,
    mirror: str | None = typer.Option(
        None, help="a copy laid out like the data folder (file:///path or http://host/path)"
    ),
) -> None:
    """Download a benchmark's official files at pinned revisions and verify their checksums."""
    from evalkit import data, paths

    target = paths.data_dir(data_dir)
    out.print(data.fetch(benchmark, target, mirror=mirror).line(benchmark, target), markup=False)


@data_app.command("verify")
def data_verify(benchmark: str, data_dir: DataDirOpt = None) -> None:
    """Check that a benchmark's files are present and match their checksums."""
    from evalkit import data, paths

    status = data.verify(paths.data_dir(data_dir), benchmark)
    for rel, state in status.items():
        out.print(f"{state:>18}  {rel}")
    if any(s != "ok" for s in status.values()):
        raise typer.Exit(2)

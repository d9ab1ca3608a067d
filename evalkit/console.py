"""The terminal: stdout for results, stderr for progress and errors (rich, no torch)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

out = Console()
err = Console(stderr=True)


def progress(description: str, total: int) -> tuple[object, Callable[[int], None]]:
    """A transient progress bar on stderr and its advance(n) callback; use the bar as a context manager."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(description, total=total)
    return bar, lambda n: bar.advance(task, n)

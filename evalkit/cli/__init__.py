"""The `evalkit` command line: one module per command group, each parses options and calls the library.

Listing commands import no torch. Every error a user can fix, usage errors included, is one line on stderr
with the fix and exit code 2, never a traceback.
"""

from __future__ import annotations

import signal
import sys

import typer

from evalkit.cli import ablate, listing, report, run, train, view
from evalkit.cli.data import data_app
from evalkit.cli.dvreward import dvreward_app
from evalkit.cli.judge import judge_app
from evalkit.cli.plot import plot_app
from evalkit.cli.weights import weights_app
from evalkit.console import err
from evalkit.errors import EvalkitError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Evaluate and improve text-to-image models."
)
listing.register(app)
run.register(app)
report.register(app)
view.register(app)
app.add_typer(plot_app, name="plot")
app.add_typer(data_app, name="data")
app.add_typer(dvreward_app, name="dvreward")
app.add_typer(judge_app, name="judge")
app.add_typer(weights_app, name="weights")
ablate.register(app)
train.register(app)

INTERRUPTED = "interrupted; finished samples are kept, re-run the same command to resume"


_SIGNALS: list[int] = []  # the signal that interrupted this process, if any


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's pre-emption, torchrun stopping its workers) runs the Ctrl-C path: locks are
    released and the message says how to resume; the exit code stays the conventional 128 + signal."""
    _SIGNALS.append(signum)
    raise KeyboardInterrupt


def _interrupted() -> None:
    err.print(INTERRUPTED)
    sys.exit(128 + (_SIGNALS[0] if _SIGNALS else signal.SIGINT))


def _quiet_libraries() -> None:
    """Our own progress bars say what is happening; library loading bars and advisories only add noise."""
    import os

    for key, value in (
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(key, value)
    for name in ("transformers", "diffusers"):  # already imported (e.g. by a caller): bars off directly
        if name in sys.modules:
            sys.modules[name].utils.logging.disable_progress_bar()
    if not os.environ.get("EVALKIT_WARNINGS"):
        import warnings

        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)


def usage_line(error: Exception) -> str:
    """A click/typer usage error as one line: what is wrong, the closest valid name, where help is."""
    from evalkit.cli.usage import explain

    return explain(error)


def _click_exceptions():
    """The click exception classes typer raises: its bundled copy (typer >= 0.20), else click's own."""
    try:
        from typer._click import exceptions
    except ImportError:  # a typer that uses the click package
        from click import exceptions
    return exceptions.NoArgsIsHelpError, exceptions.UsageError


def main() -> None:
    NoArgsIsHelpError, UsageError = _click_exceptions()  # noqa: N806 - exception classes

    _quiet_libraries()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = app(standalone_mode=False, prog_name="evalkit")
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except NoArgsIsHelpError as e:  # `evalkit` or `evalkit data` alone: the help is the answer
        e.show()
        sys.exit(2)
    except UsageError as e:
        err.print(usage_line(e), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.TyperException as e:  # other click errors (e.g. an unreadable file argument)
        err.print(f"error: {e.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except EvalkitError as e:
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        _interrupted()
    sys.exit(code if isinstance(code, int) else 0)

"""Click/typer usage errors rewritten as one line: what is wrong, then the fix (closest name or usage)."""

from __future__ import annotations

import difflib
import re


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# Names other tools use for what evalkit calls otherwise: spelling distance would suggest the wrong one
# (`--out` is closest to `--option`).
SYNONYMS = {
    "--out": "--runs-dir",
    "--output": "--runs-dir",
    "--output-dir": "--runs-dir",
    "--out-dir": "--runs-dir",
    "--data": "--data-dir",
    "--num-samples": "--limit",
}


def _suggest(name: str, choices: list[str]) -> str | None:
    if SYNONYMS.get(name) in choices:
        return SYNONYMS[name]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return close[0] if close else None


def _usage(ctx) -> str:
    try:
        usage = _one_line(ctx.get_usage())
    except Exception:  # a usage line is a courtesy; the error itself must still print
        return ""
    return usage.removeprefix("Usage:").strip()


def _no_such_command(error, ctx) -> str | None:
    found = re.match(r"No such command '(.+?)'", error.format_message())
    if not found or ctx is None or not hasattr(ctx.command, "list_commands"):
        return None
    name = found.group(1)
    commands = sorted(ctx.command.list_commands(ctx))
    close = _suggest(name, commands)
    fix = f"did you mean '{close}'?" if close else f"commands: {', '.join(commands)}"
    return f"unknown command '{name}'; {fix}"


def _no_such_option(error, ctx) -> str | None:
    name = getattr(error, "option_name", None)
    if name is None or type(error).__name__ != "NoSuchOption":
        return None
    options = [o for p in (ctx.command.params if ctx else []) for o in (*p.opts, *p.secondary_opts)]
    close = _suggest(name, [o for o in options if o != "--help"])
    return f"no such option {name}; did you mean {close}?" if close else f"no such option {name}"


def explain(error) -> str:
    """One line for a click UsageError (unknown command or option, bad value, missing argument)."""
    ctx = getattr(error, "ctx", None)
    where = ctx.command_path if ctx is not None else "evalkit"
    what = _no_such_command(error, ctx) or _no_such_option(error, ctx)
    if what is None:
        what = _one_line(error.format_message()).rstrip(".")
        what = what[:1].lower() + what[1:]
    hint = f"see `{where} --help`"
    if what.endswith("?"):  # the suggestion is the fix
        return f"error: {where}: {what} ({hint})"
    if usage := (_usage(ctx) if ctx is not None else ""):
        hint = f"usage: {usage} ({hint})"
    return f"error: {where}: {what}; {hint}"

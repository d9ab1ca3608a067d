"""User-facing errors: one clear line and exit code 2, never a traceback."""


class EvalkitError(Exception):
    """A problem with the user's input or environment that the user can fix."""

    exit_code = 2


class MissingWeightsError(EvalkitError):
    """Model weights are not on disk; the message says how to get them."""


class DataError(EvalkitError):
    """Benchmark data is missing, malformed or fails its checksum."""


def did_you_mean(kind: str, name: str, choices: list[str]) -> EvalkitError:
    """An error for an unknown name that suggests the closest known one."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return EvalkitError(f"unknown {kind} '{name}'{hint} (known: {', '.join(sorted(choices))})")

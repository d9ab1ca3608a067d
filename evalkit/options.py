"""Typed plugin options: one dataclass per plugin, each field with help text, checked before any model loads.

    @dataclass
    class MyOptions:
        steps: int | None = option(None, "sampling steps (default: the preset's)")

    parse_options(MyOptions, {"stpes": "20"}, owner="mymodel")  # -> unknown mymodel option 'stpes'; did you mean 'steps'?

Values from the command line arrive as text (`--option steps=20`) and are read as YAML scalars, then checked
against the field's type, so `steps=abc` is one line naming the option, not a crash deep inside a model.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from evalkit.errors import EvalkitError, did_you_mean

T = TypeVar("T")


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by `evalkit ls` and in error messages)."""
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _allowed_types(hint: Any) -> tuple[type, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _allowed_types(arg))
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return tuple({type(v) for v in typing.get_args(hint)})
    if hint is Any:
        return (object,)
    if hint is None or hint is type(None):
        return (type(None),)
    return (origin or hint,)


def _coerce(name: str, value: Any, hint: Any, owner: str) -> Any:
    allowed = _allowed_types(hint)
    if isinstance(value, str) and str not in allowed and object not in allowed:
        import contextlib

        import yaml

        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)
    if isinstance(value, list) and tuple in allowed:
        value = tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        value = float(value)
    ok = object in allowed or (
        isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    )
    if not ok:
        names = " or ".join(sorted({getattr(t, "__name__", str(t)) for t in allowed if t is not type(None)}))
        raise EvalkitError(f"{owner} option {name}={value!r} is not {names}")
    choices = _literal_values(hint)
    if choices and value is not None and value not in choices:
        raise EvalkitError(f"{owner} option {name}={value!r}: use one of {choices}")
    return value


def _literal_values(hint: Any) -> list[Any]:
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return [v for arg in typing.get_args(hint) for v in _literal_values(arg)]
    return []


def parse_options(schema: type[T], values: dict[str, Any], *, owner: str, allow_extra: bool = False) -> T:
    """`values` checked against `schema`: unknown names refused with the closest one (unless
    `allow_extra`: then they are left for the plugin to check), values converted to the declared types."""
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    known = {}
    for key, value in values.items():
        if key in hints:
            known[key] = _coerce(key, value, hints[key], owner)
        elif not allow_extra:
            raise did_you_mean(f"{owner} option", key, names)
    return schema(**known)


def describe(schema: type) -> list[tuple[str, str]]:
    """(name, help) per option, for listings."""
    return [(f.name, f.metadata.get("help", "")) for f in dataclasses.fields(schema)]


def require_at_least_one(options: Any, names: tuple[str, ...]) -> None:
    """Counts and sizes (steps, pixels, batch) below 1 are one line, not a crash deep in a pipeline."""
    for name in names:
        value = getattr(options, name)
        if value is not None and not isinstance(value, bool) and value < 1:
            raise EvalkitError(f"option {name}={value} must be at least 1 (-o {name}=N)")

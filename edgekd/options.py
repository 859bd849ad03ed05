"""Typed settings: values from a settings file, `--set KEY=VALUE` or a saved run are checked against the dataclass
field they set (int, float, str, bool, lists, dicts, `X | None`) before any work starts, so `train.steps=abc` or
`train.steps=1.5` is a one-line error instead of a traceback (or a silent rounding) hours later."""

from __future__ import annotations

import dataclasses
import typing

from edgekd.errors import EdgekdError


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is list:
        return isinstance(value, list)
    return True  # nested dataclasses are checked field by field by their own builder


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_fields(cls, values: dict, source: str, prefix: str = "") -> dict:
    """`values` (field name -> value) checked against `cls`'s fields: unknown names and wrong types are one-line
    EdgekdErrors naming `source` and the key. A scalar given for a list field becomes a one-element list."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise EdgekdError(f"{source}: unknown option(s) {', '.join(prefix + u for u in unknown)} "
                          f"(known: {', '.join(prefix + n for n in names)})")
    out = {}
    for key, value in values.items():
        hint = hints[key]
        if typing.get_origin(hint) is list and not isinstance(value, (list, tuple)) and value is not None:
            value = [value]
        if isinstance(value, str) and _matches(0.5, hint) and not _matches(value, hint):
            try:  # YAML 1.1 reads `1e-3` as a string; a float setting takes it as the number it spells
                value = float(value)
            except ValueError:
                pass
        if not _matches(value, hint):
            raise EdgekdError(f"{source}: {prefix}{key} must be {_describe(hint)}, got {value!r}")
        out[key] = list(value) if isinstance(value, tuple) else value
    return out

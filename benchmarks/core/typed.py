"""Typed, validated settings built from plain dicts (TOML, ``--set``), shared by the run config and by
every algorithm's hyperparameters.

A setting is a dataclass field declared with :func:`setting`; its metadata carries the allowed values,
the bounds and the documentation, and (for algorithm hyperparameters) the range a tuner may search.
Every error is one line that names the dotted field, the bad value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the field, the value and what is allowed."""


@dataclass(frozen=True)
class SearchRange:
    """What a tuner may search for one hyperparameter: a numeric interval or a list of choices."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None


def setting(default: Any, *, doc: str = "", choices: tuple | None = None, gt: float | None = None,
            ge: float | None = None, le: float | None = None, lt: float | None = None,
            tune: SearchRange | None = None) -> Any:
    """Declare a validated field. ``choices`` lists allowed values; gt/ge/le/lt bound numbers."""
    meta = {"doc": doc, "choices": choices, "gt": gt, "ge": ge, "le": le, "lt": lt, "tune": tune}
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(path, value, arg)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: {value!r} must be a list")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        return tuple(_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {value!r} must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: {value!r} must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {value!r} must be a string")
        return value
    raise ConfigError(f"{path}: unsupported setting type {_type_name(tp)}")


def _check_bounds(path: str, value: Any, meta: typing.Mapping, shown: Any = None) -> None:
    """Raise if ``value`` breaks the field's choices or bounds; ``shown`` is the value as the user wrote it."""
    shown = value if shown is None else shown
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{path}: {shown!r} is not one of {allowed}")
    if value is None or isinstance(value, (str, bool, tuple)):
        return
    for key, ok, word in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                          ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{path}: {shown!r} must be {word} {bound:g}")


def build(cls: type, data: typing.Mapping[str, Any] | None, path: str) -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown setting (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{path}.{name}" if path else name
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, data[name], dotted)
            continue
        value = _coerce(dotted, data[name], tp)
        _check_bounds(dotted, value, f.metadata, shown=data[name])
        kwargs[name] = value
    obj = cls(**kwargs)
    for name, f in fields.items():
        if name not in data and not dataclasses.is_dataclass(hints[name]):
            _check_bounds(f"{path}.{name}" if path else name, getattr(obj, name), f.metadata)
    return obj


def to_dict(obj: Any) -> dict:
    """Plain-dict form of a settings dataclass (tuples become lists, as JSON and TOML hold them)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def search_space(cls: type) -> dict[str, SearchRange]:
    """The declared tuning ranges of a hyperparameter dataclass, by field name."""
    return {f.name: f.metadata["tune"] for f in dataclasses.fields(cls) if f.metadata.get("tune") is not None}


def describe(cls: type) -> dict[str, str]:
    """Field name -> documentation, for help texts."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}

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


# Settings end up in numpy and torch: an int past int64 overflows there and a float past float32's range
# becomes inf in a tensor, both far from the setting that caused it, so they are refused here.
INT_LIMIT = 2 ** 63
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class SearchRange:
    """What a tuner may search for one hyperparameter: a numeric interval or a list of choices."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None


_AS_DEFAULT = object()


def setting(default: Any, *, doc: str = "", choices: tuple | None = None, gt: float | None = None,
            ge: float | None = None, le: float | None = None, lt: float | None = None,
            tune: SearchRange | None = None, official: Any = _AS_DEFAULT,
            official_by_dataset: dict[str, Any] | None = None, diagnostic: bool = False) -> Any:
    """Declare a validated field. ``choices`` lists allowed values; gt/ge/le/lt bound numbers. For an
    algorithm hyperparameter, ``official`` is the reference code's value where the default is not,
    ``official_by_dataset`` its value for the datasets whose released scripts set another, and
    ``diagnostic`` marks a setting that changes only what a run records, never the trained model."""
    meta = {"doc": doc, "choices": choices, "gt": gt, "ge": ge, "le": le, "lt": lt, "tune": tune,
            "official": default if official is _AS_DEFAULT else official,
            "official_by_dataset": dict(official_by_dataset or {}), "diagnostic": diagnostic}
    return field(default=default, metadata=meta)


def official_deviations(params: Any, dataset: str | None = None) -> dict[str, tuple[Any, Any]]:
    """The fields of the settings dataclass ``params`` whose value is not the reference code's (for
    ``dataset``): name -> (value, official). Diagnostic settings and fields declared without
    :func:`setting` are skipped, and so is every field of a class whose ``OFFICIAL_CODE`` is False (a
    method without reference code)."""
    out: dict[str, tuple[Any, Any]] = {}
    if not getattr(type(params), "OFFICIAL_CODE", True):
        return out
    for f in dataclasses.fields(params):
        if "official" not in f.metadata or f.metadata.get("diagnostic"):
            continue
        official = f.metadata["official_by_dataset"].get(dataset, f.metadata["official"])
        value = getattr(params, f.name)
        if value != official:
            out[f.name] = (value, official)
    return out


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
            raise ConfigError(f"{path}: {_shown(value)} must be a list")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        return tuple(_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {_shown(value)} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {_shown(value)} must be an integer")
        if not -INT_LIMIT <= value < INT_LIMIT:
            raise ConfigError(f"{path}: {_shown(value)} must be an integer below 2**63 in magnitude")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {_shown(value)} must be a number")
        if abs(value) > FLOAT32_MAX or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{path}: {_shown(value)} must be a finite number within float32 range (|x| <= 3.4e38)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {_shown(value)} must be a string")
        return value
    raise ConfigError(f"{path}: unsupported setting type {_type_name(tp)}")


def _shown(value: Any) -> str:
    """The value as an error shows it: a table is named as one (its repr can be pages long)."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "an array of tables"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_table(value: Any, path: str) -> dict:
    """``value`` if it is a table; else a ConfigError naming ``path`` and how a table is written."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{path}: is an array of tables ([[{path}]]); write one [{path}] table")
    raise ConfigError(f"{path}: {_shown(value)} is a value, but {path} is a table of settings "
                      f"(write [{path}] in TOML, or --set {path}.<setting>=...)")


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
    data = dict(check_table({} if data is None else data, path or "config"))
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


@dataclass(frozen=True)
class SettingInfo:
    """One setting as ``hetbench config --show`` lists it."""
    key: str
    default: Any
    allowed: str
    doc: str


def settings_info(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> list[SettingInfo]:
    """Every setting of ``cls`` (nested tables walked, in declaration order) with its default, what it
    allows and its doc; fields named in ``skip`` are left out."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += settings_info(hints[f.name], f"{key}.")
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        rows.append(SettingInfo(key, default, _allowed_text(hints[f.name], f.metadata), f.metadata.get("doc", "")))
    return rows


def _allowed_text(tp: Any, meta: typing.Mapping) -> str:
    if meta.get("choices") is not None:
        parts = ["one of " + ", ".join(str(c) for c in meta["choices"])]
    else:
        names = [("unset" if a is type(None) else _type_name(a)) for a in typing.get_args(tp)] or [_type_name(tp)]
        parts = [" or ".join(names)]
        parts += [f"{word} {meta[key]:g}" for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                  if meta.get(key) is not None]
    tune = meta.get("tune")
    if tune is not None:
        parts.append(f"tuned over {list(tune.choices)}" if tune.choices is not None
                     else f"tuned over [{tune.low:g}, {tune.high:g}]{' log' if tune.log else ''}")
    return ", ".join(parts)


def coerce_setting(cls: type, key: str, value: Any, path: str) -> Any:
    """``value`` checked as the dotted setting ``key`` of ``cls`` would be by :func:`build`; errors name
    ``path`` (where the value was written)."""
    *tables, leaf = key.split(".")
    for part in tables:
        hint = _field_hints(cls).get(part)
        if not dataclasses.is_dataclass(hint):
            raise ConfigError(f"{path}: {key!r} is not a setting (`hetbench config --show` lists them)")
        cls = hint
    hints = _field_hints(cls)
    if leaf not in hints:
        raise ConfigError(f"{path}: {key!r} is not a setting (`hetbench config --show` lists them)")
    if dataclasses.is_dataclass(hints[leaf]):
        raise ConfigError(f"{path}: {key!r} is a table of settings; name one of them, e.g. {key}.<setting>")
    meta = next(f.metadata for f in dataclasses.fields(cls) if f.name == leaf)
    coerced = _coerce(path, value, hints[leaf])
    _check_bounds(path, coerced, meta, shown=value)
    return coerced


def _field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}

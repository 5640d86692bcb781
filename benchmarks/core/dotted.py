"""Dotted paths into nested dicts (``partition.alpha``): the one walker that configs, suites, set-files,
the tuner and the reports share."""
from __future__ import annotations

from typing import Any

MISSING = object()


def get_dotted(data: Any, key: str, default: Any = MISSING) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; ``default`` when a part is absent (KeyError if none is given)."""
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def has_dotted(data: Any, key: str) -> bool:
    absent = object()
    return get_dotted(data, key, absent) is not absent


def set_dotted(data: dict, key: str, value: Any, error: type[Exception] = KeyError) -> None:
    """Set ``key`` in ``data``, creating tables on the way; ``error`` is raised (naming the key) when a
    part of the path is a value rather than a table."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise error(f"{key}: {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = value


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (tables only; lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

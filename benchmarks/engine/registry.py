"""The algorithm registry: ``@register("name")`` on a class makes it runnable by that name.

Registration happens when the ``algorithms`` package is imported, which imports every module in it;
adding an algorithm means adding its module, nothing else. The registry lives in the engine so that
the runner can look an algorithm up without importing the package that sits above it.
"""
from __future__ import annotations

from benchmarks.core.typed import ConfigError

_REGISTRY: dict[str, type] = {}


def register(name: str, title: str | None = None):
    """Class decorator: make an algorithm class available under ``name``; ``title`` is how tables and
    figures name it (recorded in each run's summary.json, so reports need not import the class)."""
    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"algorithm {name!r} registered twice")
        cls.name = name
        cls.title = title or name
        _REGISTRY[name] = cls
        return cls
    return wrap


def algorithm_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_algorithm(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"algorithm: {name!r} is not one of {', '.join(algorithm_names())}") from None

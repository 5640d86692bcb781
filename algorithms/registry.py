"""The algorithm registry: ``@register("name")`` on a class makes it runnable by that name.

Registration happens when ``algorithms`` is imported, which imports every algorithm module; adding an
algorithm means adding a module and one import line in ``algorithms/__init__.py``, nothing else.
"""
from __future__ import annotations

from benchmarks.typed import ConfigError

_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make an algorithm class available under ``name``."""
    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"algorithm {name!r} registered twice")
        cls.name = name
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

"""Federated-learning algorithms, one module each, registered by name with ``@register("name")``.

Importing this package imports every module in it (and any folder later added to ``__path__``), so
adding an algorithm is adding its module: no list to extend anywhere else.
"""
from __future__ import annotations

import importlib
import pkgutil

from benchmarks.engine.api import algorithm_names, get_algorithm, register


def discover() -> tuple[str, ...]:
    """Import every module of this package (idempotent); returns the registered algorithm names."""
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return algorithm_names()


discover()

__all__ = ["algorithm_names", "discover", "get_algorithm", "register"]

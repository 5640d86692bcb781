"""The tuner's chosen hyperparameters, so a reader of the report knows which runs used tuned values.

The tuner writes ``<results>/tuning/<study>/best.toml`` as a TOML override file; the report shows
those files verbatim rather than re-parsing them, so what is shown is exactly what a run would load.
"""
from __future__ import annotations

from pathlib import Path


def tuned_overrides(results: Path) -> list[tuple[str, str]]:
    """(path relative to the results root, file text) of every study's best.toml, in path order."""
    return [(path.relative_to(results).as_posix(), path.read_text())
            for path in sorted(Path(results).glob("tuning/*/best.toml"))]

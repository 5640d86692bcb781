"""Named grids of runs: ``<name>.toml`` holds a ``[suite]`` description, a ``[base]`` run config and
``[axes]`` (dotted config keys -> lists of values). A suite expands to the cartesian product of its axes,
in the order the axes are written; every cell is validated before any run starts."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import RunConfig, apply_overrides, config_from_dict, read_toml, set_dotted
from benchmarks.typed import ConfigError

SUITES_DIR = Path(__file__).resolve().parent


@dataclass
class Suite:
    name: str
    description: str
    cells: list[RunConfig]


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return path
    path = SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"suite: {name!r} is not one of {', '.join(suite_names())} (or a path to a suite .toml)")
    return path


def load_suite(name: str, overrides: list[str] | None = None) -> Suite:
    path = suite_path(name)
    data = read_toml(path)
    unknown = sorted(set(data) - {"suite", "base", "axes"})
    if unknown:
        raise ConfigError(f"{path.name}: unknown section {unknown[0]!r} (allowed: suite, base, axes)")
    meta = data.get("suite", {})
    base = data.get("base", {})
    axes = data.get("axes", {})
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path.name}: axes.{key} must be a non-empty list")
    cells = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        cell = apply_overrides(base, [])
        for key, value in zip(keys, combo):
            set_dotted(cell, key, value)
        cells.append(config_from_dict(apply_overrides(cell, overrides or [])))
    return Suite(name=meta.get("name", path.stem), description=meta.get("description", ""), cells=cells)

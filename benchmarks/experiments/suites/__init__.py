"""Named grids of runs: ``<name>.toml`` holds a ``[suite]`` description, a ``[base]`` run config,
``[axes]`` (dotted config keys -> lists of values) and optional ``[[when]]`` rules (``match`` = dotted keys
-> values, ``set`` = dotted keys -> values applied to the cells that match, e.g. DynaFed's per-dataset
fine-tuning epochs). A suite expands to the cartesian product of its axes, in the order the axes are
written; every cell is validated before any run starts. ``[suite] if_data_present`` lists datasets
whose cells run only where that dataset is on the machine (CINIC-10, which no registry ships)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from benchmarks.experiments.config import (RunConfig, apply_overrides, apply_set_files, config_from_dict, read_set_file,
                               read_toml, set_dotted)
from benchmarks.core.dotted import get_dotted
from benchmarks.core.typed import ConfigError

SUITES_DIR = Path(__file__).resolve().parent


@dataclass
class Suite:
    name: str
    description: str
    cells: list[RunConfig]
    if_data_present: tuple[str, ...] = ()

    def runnable(self, data_dir=None) -> tuple[Suite, list[str]]:
        """This suite without the cells of ``if_data_present`` datasets that are not on this machine, and
        one line per dataset left out saying how to get it."""
        from benchmarks.data.datasets import dataset_status
        ready = {row["name"]: row for row in dataset_status(data_dir)}
        absent = [name for name in self.if_data_present if name in ready and not ready[name]["ready"]]
        if not absent:
            return self, []
        kept = [c for c in self.cells if c.dataset.name not in absent]
        notes = [f"suite {self.name}: {name} is not on this machine, so its "
                 f"{sum(c.dataset.name == name for c in self.cells)} cells are left out; "
                 f"{ready[name]['how_to_get']}" for name in absent]
        return Suite(self.name, self.description, kept, self.if_data_present), notes


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


def load_suite(name: str, overrides: list[str] | None = None, set_files: list[str | Path] = ()) -> Suite:
    """The suite's validated cells; each ``--set-file`` is laid over the cells its scope matches, then
    ``overrides`` over every cell. A file that matches no cell is an error: it was surely meant for one."""
    path = suite_path(name)
    files = [read_set_file(p) for p in set_files]
    matched = []
    data = read_toml(path)
    unknown = sorted(set(data) - {"suite", "base", "axes", "when"})
    if unknown:
        raise ConfigError(f"{path.name}: unknown section {unknown[0]!r} (allowed: suite, base, axes, when)")
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
        for rule in data.get("when", []):
            if all(get_dotted(cell, key, None) == value for key, value in rule.get("match", {}).items()):
                for key, value in rule.get("set", {}).items():
                    set_dotted(cell, key, value)
        cell, used = apply_set_files(cell, files, overrides or [])
        matched.extend(used)
        cells.append(config_from_dict(apply_overrides(cell, overrides or [])))
    for f in files:
        if f not in matched:
            raise ConfigError(f"--set-file: {f.path} is for {f.describe_scope()}; "
                              f"no cell of suite {path.stem} matches")
    optional = meta.get("if_data_present", [])
    if not isinstance(optional, list) or not all(isinstance(n, str) for n in optional):
        raise ConfigError(f"{path.name}: suite.if_data_present must be a list of dataset names")
    return Suite(name=meta.get("name", path.stem), description=meta.get("description", ""), cells=cells,
                 if_data_present=tuple(optional))


"""Named grids of runs: ``<name>.toml`` holds a ``[suite]`` description, a ``[base]`` run config,
``[axes]`` (dotted config keys -> lists of values) and optional ``[[when]]`` rules (``match`` = dotted keys
-> values, ``set`` = dotted keys -> values applied to the cells that match, e.g. DynaFed's per-dataset
fine-tuning epochs). A suite expands to the cartesian product of its axes, in the order the axes are
written; the file's grammar (``grammar.py``) and every cell are validated before any run starts. ``[suite]
if_data_present`` lists datasets whose cells run only where that dataset is on the machine (CINIC-10,
which no registry ships). ``[deviations]`` (dotted algorithm setting -> reason) says why each algorithm
hyperparameter set away from the official code's value is; when the table is there it must cover every
such value and nothing else (``benchmarks.experiments.deviations``). Cells changed by ``--set``/``--set-file`` file under ``<name>@<hash>``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.core.dotted import get_dotted
from benchmarks.core.typed import ConfigError
from benchmarks.experiments.config import (RunConfig, SetFile, apply_overrides, apply_set_files, config_from_dict,
                                           filing_name, read_set_file, read_toml, resolved_values, set_dotted)
from benchmarks.experiments.deviations import check_listed, collect, deviation_rows
from benchmarks.experiments.suites.grammar import SuiteSpec, parse_suite
from benchmarks.store.rundir import SUITE_NAME_RULE, is_suite_name

SUITES_DIR = Path(__file__).resolve().parent


@dataclass
class Suite:
    name: str
    description: str
    cells: list[RunConfig]
    if_data_present: tuple[str, ...] = ()
    # The suite file's own name when ``--set``/``--set-file`` changed its cells and ``name`` is the
    # derived ``<own>@<tag>`` folder they file under instead.
    derived_from: str | None = None
    # The cells' algorithm hyperparameters away from the official values, with the file's reasons
    # (``deviations.deviation_rows``), as the suite folder's deviations.csv records them.
    deviations: list[dict[str, str]] = field(default_factory=list)
    # The suite file's [deviations] reasons (None when it has no such table)
    reasons: dict[str, str] | None = None

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
        return replace(self, cells=kept), notes


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" and (path.exists() or not is_suite_name(name)):
        return path
    if not is_suite_name(name):
        raise ConfigError(f"suite: {name!r} is neither a path to a suite .toml file nor a suite name ({SUITE_NAME_RULE})")
    path = SUITES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"suite: {name!r} is not one of {', '.join(suite_names())} (or a path to a suite .toml)")
    return path


def suite_base(name: str) -> dict:
    """The ``[base]`` table of the suite ``name`` (a name or a path), for ``run --base``."""
    base = read_toml(suite_path(name), option="--base").get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"--base: suite {name} has no [base] table")
    return base


def load_suite(name: str, overrides: list[str] | None = None, set_files: list[str | Path] = ()) -> Suite:
    """The suite's validated cells; each ``--set-file`` is laid over the cells its scope matches, then
    ``overrides`` over every cell. A file that matches no cell is an error: it was surely meant for one.
    Cells changed by overrides file under a derived name (``filing_name``)."""
    path = suite_path(name)
    spec = parse_suite(path, read_toml(path, option="suite"))
    try:
        raw = expand(spec)
        own = _unique([config_from_dict(cell) for cell in raw])
        if spec.deviations is not None:
            check_listed(spec.deviations, own)
    except ConfigError as exc:  # the suite file alone is wrong: say which file
        raise ConfigError(f"{spec.file}: {exc}") from None
    overrides = list(overrides or [])
    files = [read_set_file(p) for p in set_files]
    cells = _unique(_overridden(raw, files, overrides, spec.name)) if files or overrides else own
    folder = filing_name(spec.name, own, cells, overrides, files)
    return Suite(name=folder, description=spec.description, cells=cells, if_data_present=spec.if_data_present,
                 derived_from=spec.name if folder != spec.name else None,
                 deviations=deviation_rows(cells, spec.deviations, collect(own) if cells is not own else None),
                 reasons=spec.deviations)


def expand(spec: SuiteSpec) -> list[dict]:
    """Every cell's config dict: the base, one value of each axis, then the [[when]] rules in order. A rule
    matches the cell's resolved config (defaults filled in), so it also applies where the value it names
    was left at its default; a rule that matches no cell is an error, as it surely was meant for one."""
    cells, applied = [], {rule.where: 0 for rule in spec.rules}
    for combo in spec.combos():
        cell = apply_overrides(spec.base, [])
        for key, value in combo:
            set_dotted(cell, key, value)
        for rule in spec.rules:
            values = resolved_values(cell)
            if all(get_dotted(values, key, None) == value for key, value in rule.match.items()):
                applied[rule.where] += 1
                for key, value in rule.set.items():
                    set_dotted(cell, key, value)
        cells.append(cell)
    for rule in spec.rules:
        if not applied[rule.where]:
            wanted = ", ".join(f"{k} = {v!r}" for k, v in rule.match.items())
            raise ConfigError(f"{rule.where}: matches no cell of the suite ({wanted})")
    return cells


def _overridden(raw: list[dict], files: list[SetFile], overrides: list[str], name: str) -> list[RunConfig]:
    cells, matched = [], []
    for cell in raw:
        cell, used = apply_set_files(cell, files, overrides)
        matched.extend(used)
        cells.append(config_from_dict(apply_overrides(cell, overrides)))
    for f in files:
        if f not in matched:
            raise ConfigError(f"--set-file: {f.path} is for {f.describe_scope()}; no cell of suite {name} matches")
    return cells


def _unique(cells: list[RunConfig]) -> list[RunConfig]:
    """Cells in order, each run once: an axis over a setting some cells do not read (fedprox's mu in the
    fedavg cells) makes the same run several times over."""
    seen, out = set(), []
    for cell in cells:
        if cell.run_id() not in seen:
            seen.add(cell.run_id())
            out.append(cell)
    return out

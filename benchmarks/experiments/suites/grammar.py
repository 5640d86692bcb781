"""What a suite file may hold, checked as a whole before any cell is built.

Every key of the file is accounted for: a misspelt section, a key of [suite] that belongs under [axes], a
[[when]] key that names no setting would otherwise be ignored without a word, and a suite silently
missing cells (or running the wrong ones) is found only after hours of sweeping.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import algorithms
from benchmarks.core.dotted import flatten
from benchmarks.core.typed import ConfigError, coerce_setting
from benchmarks.data.datasets import DATASET_NAMES
from benchmarks.engine.api import get_algorithm
from benchmarks.engine.settings import EXECUTION_KEYS, ExecutionConfig, RunConfig
from benchmarks.store.rundir import SUITE_NAME_RULE, is_suite_name

SECTIONS = ("suite", "base", "axes", "when", "deviations")
SUITE_KEYS = ("name", "description", "if_data_present")
RULE_KEYS = ("match", "set")


@dataclass(frozen=True)
class Rule:
    """A ``[[when]]``: ``set`` is laid over the cells whose resolved config has every ``match`` value."""
    where: str
    match: dict[str, Any]
    set: dict[str, Any]


@dataclass(frozen=True)
class SuiteSpec:
    file: str
    name: str
    description: str
    if_data_present: tuple[str, ...]
    base: dict
    axes: list[tuple[str, list]]
    rules: list[Rule]
    # Why each algorithm hyperparameter that differs from the official code's value does
    # ("algorithms.dynafed.ipc" -> reason); None when the file has no [deviations] table.
    deviations: dict[str, str] | None = None

    def combos(self):
        """Each cell's axis values, as (dotted key, value) pairs, in the order the axes are written."""
        keys = [key for key, _ in self.axes]
        for values in itertools.product(*(values for _, values in self.axes)):
            yield list(zip(keys, values))


def parse_suite(path: Path, data: dict) -> SuiteSpec:
    """The suite file ``data`` read from ``path``; every error is one line starting with the file's name."""
    file = path.name
    try:
        return _parse(path, data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def _parse(path: Path, data: dict) -> SuiteSpec:
    for key in data:
        if key not in SECTIONS:
            hint = "; settings go under [base], axes under [axes]" if not isinstance(data[key], dict) else ""
            raise ConfigError(f"unknown section {key!r} (allowed: {', '.join(SECTIONS)}){hint}")
    meta = _table(data.get("suite", {}), "suite")
    base = _table(data.get("base", {}), "base")
    axes = _axes(_table(data.get("axes", {}), "axes"))
    if not base and not axes:
        raise ConfigError("has no [base] and no [axes]: it would run the defaults alone")
    rules = _rules(data.get("when", []))
    deviations = _deviations(_table(data["deviations"], "deviations")) if "deviations" in data else None
    for key in meta:
        if key not in SUITE_KEYS:
            hint = "; an axis goes under [axes]" if isinstance(meta[key], (list, dict)) else ""
            raise ConfigError(f"suite.{key}: unknown key in [suite] (allowed: {', '.join(SUITE_KEYS)}){hint}")
    name = meta.get("name", path.stem)
    if not is_suite_name(name):
        where = "suite.name" if "name" in meta else f"the file name {path.stem!r} (no [suite] name)"
        raise ConfigError(f"{where}: {name!r} is not a suite name ({SUITE_NAME_RULE})")
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"suite.description: {description!r} must be a string")
    optional = meta.get("if_data_present", [])
    if not isinstance(optional, list) or not all(isinstance(n, str) and n in DATASET_NAMES for n in optional):
        raise ConfigError(f"suite.if_data_present: {optional!r} must be a list of dataset names "
                          f"({', '.join(DATASET_NAMES)})")
    return SuiteSpec(path.name, name, description, tuple(optional), base, axes, rules, deviations)


def _table(value: Any, section: str) -> dict:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{section}: is an array of tables ([[{section}]]); write one [{section}] table")
    if not isinstance(value, dict):
        raise ConfigError(f"{section}: must be a table ([{section}]), not the value {str(value)[:60]}")
    return value


def _axes(table: dict) -> list[tuple[str, list]]:
    axes: dict[str, list] = {}
    for key, values in _flat_items(table, "axes"):
        if not isinstance(values, list) or not values:
            raise ConfigError(f"axes.{key}: must be a non-empty list of values")
        seen = []
        for i, value in enumerate(values):
            coerced = check_setting(key, value, f"axes.{key}[{i}]")
            if coerced in seen:
                raise ConfigError(f"axes.{key}: {value!r} is listed twice")
            seen.append(coerced)
        axes[key] = values
    return list(axes.items())


def _rules(value: Any) -> list[Rule]:
    if isinstance(value, dict):
        raise ConfigError("when: must be [[when]] rules (an array of tables), not one [when] table")
    if not isinstance(value, list) or not all(isinstance(rule, dict) for rule in value):
        raise ConfigError("when: must be [[when]] rules, each with match = {...} and set = {...}")
    rules = []
    for i, rule in enumerate(value, start=1):
        where = f"when[{i}]"
        for key in rule:
            if key not in RULE_KEYS:
                raise ConfigError(f"{where}.{key}: unknown key (allowed: {', '.join(RULE_KEYS)})")
        parts = {}
        for part in RULE_KEYS:
            table = rule.get(part)
            if not isinstance(table, dict) or not table:
                raise ConfigError(f"{where}.{part}: must be a non-empty table of setting = value")
            parts[part] = {key: check_setting(key, v, f"{where}.{part}.{key}")
                           for key, v in _flat_items(table, f"{where}.{part}")}
        rules.append(Rule(where, parts["match"], dict(_flat_items(rule["set"], f"{where}.set"))))
    return rules


def _deviations(table: dict) -> dict[str, str]:
    reasons = {}
    for key, reason in _flat_items(table, "deviations"):
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "algorithms" or parts[1] not in algorithms.algorithm_names():
            raise ConfigError(f"deviations.{key}: must name an algorithm hyperparameter, "
                              f"algorithms.<{'|'.join(algorithms.algorithm_names())}>.<setting>")
        fields = {f.name: f for f in dataclasses.fields(get_algorithm(parts[1]).Params)}
        if parts[2] not in fields:
            raise ConfigError(f"deviations.{key}: {parts[2]!r} is not a setting of {parts[1]} "
                              f"(allowed: {', '.join(fields)})")
        if fields[parts[2]].metadata.get("diagnostic"):
            raise ConfigError(f"deviations.{key}: a diagnostic setting (it changes only what a run records, "
                              "never the model) needs no reason; remove the line")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"deviations.{key}: must be a non-empty string saying why (the ablation behind "
                              "it, or that it is a budget cut)")
        reasons[key] = " ".join(reason.split())
    return reasons


def _flat_items(table: dict, where: str) -> list[tuple[str, Any]]:
    """Nested tables as dotted keys. TOML lets one key be written both quoted ("partition.alpha") and as
    nested tables (partition.alpha); the second would silently win, so it is refused."""
    items: dict[str, Any] = {}
    for key, value in table.items():
        for dotted, leaf in (flatten(value, f"{key}.") if isinstance(value, dict) else {key: value}).items():
            if dotted in items:
                raise ConfigError(f"{where}.{dotted}: written twice (quoted as \"{dotted}\" and as nested tables)")
            items[dotted] = leaf
    return list(items.items())


def check_setting(key: str, value: Any, where: str) -> Any:
    """``value`` checked (and converted, as an int given for a float) as setting ``key``; errors name ``where``."""
    parts = key.split(".")
    if parts[0] == "algorithms" and len(parts) >= 3:
        if parts[1] not in algorithms.algorithm_names():
            raise ConfigError(f"{where}: {parts[1]!r} is not one of {', '.join(algorithms.algorithm_names())}")
        value = coerce_setting(get_algorithm(parts[1]).Params, ".".join(parts[2:]), value, where)
    elif key in EXECUTION_KEYS:
        value = coerce_setting(ExecutionConfig, key, value, where)
    elif parts[0] in ("hparams", "execution", "algorithms"):
        raise ConfigError(f"{where}: {key!r} is not a setting (`hetbench config --show` lists them)")
    else:
        value = coerce_setting(RunConfig, key, value, where)
    if key == "algorithm" and value not in algorithms.algorithm_names():
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(algorithms.algorithm_names())}")
    return list(value) if isinstance(value, tuple) else value

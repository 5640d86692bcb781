"""The run config: one typed, validated description of a federated run.

A config comes from a TOML file or a suite cell, plus ``--set key=value`` overrides with dotted keys. It is
validated completely before any work starts; unknown keys are errors. Each algorithm's hyperparameters
live under ``[algorithms.<name>]``; every such table is validated, but only the chosen algorithm's is kept,
so it alone enters the run id. Tables of other algorithms are shared by a suite's cells (a suite base may
carry several); in a single run's config nothing would read them, so they are refused there.
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import algorithms
from benchmarks.core import dotted
from benchmarks.core.typed import ConfigError, build, check_table
from benchmarks.engine.api import get_algorithm
from benchmarks.engine.settings import (EXECUTION_KEYS, ClientConfig, ExecutionConfig, RunConfig,  # noqa: F401
                                        canonical_json, paper_deviations, validate_cross_fields)
from benchmarks.experiments.limits import check_values
from benchmarks.experiments.reading import MAX_DEPTH, depth, parse_value, read_toml  # noqa: F401

SUITE_SECTIONS = ("suite", "base", "axes", "when")
TOP_LEVEL = tuple(f.name for f in fields(RunConfig) if f.name not in ("hparams", "execution")) + EXECUTION_KEYS + (
    "algorithms",)


def config_from_dict(data: dict, single_run: bool = False) -> RunConfig:
    """Validate a whole config dict (as read from TOML) into a RunConfig; ``single_run`` refuses tables of
    algorithms other than the chosen one, which nothing would read."""
    cfg, foreign = _build(data)
    if single_run and foreign:
        raise ConfigError(f"algorithms.{foreign[0]}: settings for {foreign[0]}, but this run's algorithm is "
                          f"{cfg.algorithm}, so nothing would read them; drop the table or set "
                          f"algorithm = \"{foreign[0]}\"")
    validate_cross_fields(cfg)
    get_algorithm(cfg.algorithm).validate(cfg)
    check_values(cfg)
    return cfg


def resolved_values(data: dict) -> dict:
    """The config ``data`` describes, defaults filled in, as a plain dict (what a suite's ``[[when]]``
    matches on); values are type- and bound-checked, but not yet checked against each other."""
    return _build(data)[0].to_dict()


def _build(data: dict) -> tuple[RunConfig, list[str]]:
    """The typed config and the names of the algorithm tables it does not use."""
    data = copy.deepcopy(check_table(data, "config"))
    tables = check_table(data.pop("algorithms", {}), "algorithms")
    for name, table in tables.items():
        if name not in algorithms.algorithm_names():
            raise ConfigError(f"algorithms.{name}: {name!r} is not one of {', '.join(algorithms.algorithm_names())}")
        check_table(table, f"algorithms.{name}")
    if "hparams" in data:
        raise ConfigError("hparams: unknown setting; put hyperparameters under [algorithms.<name>]")
    name = data.get("algorithm", "fedavg")
    if not isinstance(name, str):
        raise ConfigError(f"algorithm: {name!r} must be a string")
    algo_cls = get_algorithm(name)
    params = {other: build(get_algorithm(other).Params, table, f"algorithms.{other}") for other, table in tables.items()}
    execution = build(ExecutionConfig, {key: data.pop(key) for key in EXECUTION_KEYS if key in data}, "")
    if "execution" in data:
        raise ConfigError(f"execution: unknown setting; write {', '.join(EXECUTION_KEYS)} at the top level")
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:  # named here, as RunConfig's own field list has hparams and execution, which are not settings
        raise ConfigError(f"{unknown[0]}: unknown setting (allowed: {', '.join(sorted(TOP_LEVEL))})")
    cfg = build(RunConfig, data, "")
    hparams = params[name] if name in params else build(algo_cls.Params, {}, f"algorithms.{name}")
    cfg = replace(cfg, hparams=hparams, execution=execution)
    if cfg.partition.seed is None:
        cfg = replace(cfg, partition=replace(cfg.partition, seed=cfg.seed))
    return cfg, sorted(set(tables) - {name})


_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings as (dotted key, value) pairs."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: {item!r} must look like key=value (e.g. partition.alpha=0.04)")
        key, text = (part.strip() for part in item.split("=", 1))
        if not _KEY.fullmatch(key):
            raise ConfigError(f"--set: {item[:80]!r}: {key[:60]!r} is not a dotted setting name (e.g. partition.alpha)")
        value = parse_value(text)
        if key.count(".") + depth(value) > MAX_DEPTH:
            raise ConfigError(f"--set: {key[:60]}: nested more than {MAX_DEPTH} deep; settings are at most 3 deep")
        pairs.append((key, value))
    return pairs


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides to a config dict (a new dict is returned). A table value
    (``--set partition={alpha=0.1}``) is laid over the table it names, as a set-file would be."""
    data = copy.deepcopy(data)
    for key, value in parse_overrides(overrides):
        current = dotted.get_dotted(data, key, None)
        if isinstance(value, dict) and isinstance(current, dict):
            value = merge_tables(current, value)
        set_dotted(data, key, value)
    return data


def set_dotted(data: dict, key: str, value: Any) -> None:
    dotted.set_dotted(data, key, value, error=ConfigError)


def merge_tables(data: dict, overrides: dict) -> dict:
    """``overrides`` laid over ``data`` table by table (a new dict), as TOML tables nest in a config."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        if isinstance(value, dict):
            if not isinstance(out.get(key, {}), dict):
                raise ConfigError(f"{key}: is a value in the config, the override file has a table")
            out[key] = merge_tables(out.get(key, {}), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class SetFile:
    """A ``--set-file``: overrides nested like a config, laid over it before ``--set``.

    An optional ``[scope]`` table (dotted key -> value, e.g. ``algorithm = "fedprox"``) names the configs
    the file is meant for. A tuning study writes one, because values tuned for one algorithm, dataset and
    alpha must not leak into the other cells of a suite; several scoped files can then serve one sweep.
    """
    path: Path
    overrides: dict
    scope: dict

    def matches(self, data: dict) -> bool:
        """Whether the config ``data`` (before this file is applied) is one the scope names."""
        if not self.scope:
            return True
        values = config_from_dict(data).to_dict()
        return all(_dotted_value(values, key, self.path) == value for key, value in self.scope.items())

    def describe_scope(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.scope.items()) or "every config"


def read_set_file(path: str | Path) -> SetFile:
    data = read_toml(path, option="--set-file")
    scope = data.pop("scope", {})
    if not isinstance(scope, dict) or any(isinstance(v, dict) for v in scope.values()):
        raise ConfigError(f"--set-file: {path}: [scope] must map dotted keys to values (e.g. algorithm = \"fedprox\")")
    if not data:
        raise ConfigError(f"--set-file: {path} has a [scope] but sets nothing")
    return SetFile(Path(path), data, scope)


def _dotted_value(values: dict, key: str, path: Path) -> Any:
    try:
        return dotted.get_dotted(values, key)
    except KeyError:
        raise ConfigError(f"--set-file: {path}: scope key {key!r} is not a config setting") from None


def apply_set_files(data: dict, set_files: list[SetFile], overrides: list[str]) -> tuple[dict, list[SetFile]]:
    """``data`` with every matching file laid over it, and the files that matched.

    Scopes are matched against the config as ``--set`` will leave it, so ``--set algorithm=X`` selects
    the files tuned for X.
    """
    target = apply_overrides(data, overrides)
    used = [f for f in set_files if f.matches(target)]
    for f in used:
        data = merge_tables(data, f.overrides)
    return data, used


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                set_files: list[str | Path] = (), base: dict | None = None) -> RunConfig:
    """A single run's config: ``base`` (a suite's ``[base]`` table, for ``run --base``), the file over it
    (defaults for what both omit), matching set-files, then ``--set``."""
    user = read_toml(path) if path else {}
    if set(user) & set(SUITE_SECTIONS):
        raise ConfigError(f"--config: {path} is a suite file ([suite], [base], [axes]); run it with "
                          f"`hetbench sweep {path}`")
    data = merge_tables(base, user) if base else user
    files = [read_set_file(p) for p in set_files]
    data, used = apply_set_files(data, files, overrides or [])
    if base:  # a suite's base carries tables for all its algorithms; the run keeps its own and the user's
        chosen = apply_overrides(data, overrides or []).get("algorithm", "fedavg")
        data["algorithms"] = {name: table for name, table in data.get("algorithms", {}).items()
                              if name == chosen or name in user.get("algorithms", {})}
    for f in files:
        if f not in used:
            raise ConfigError(f"--set-file: {f.path} is for {f.describe_scope()}; the config does not match")
    return config_from_dict(apply_overrides(data, overrides or []), single_run=True)


def override_tag(overrides: list[str], set_files: list[SetFile]) -> str:
    """A short hash of ``--set`` and ``--set-file`` overrides: the suffix of the folder their runs file under."""
    described = {"set": parse_overrides(overrides),
                 "set_files": [{"scope": f.scope, "overrides": f.overrides} for f in set_files]}
    return hashlib.sha256(canonical_json(described).encode()).hexdigest()[:8]


def filing_name(name: str, own: list[RunConfig] | None, cells: list[RunConfig], overrides: list[str],
                set_files: list[SetFile]) -> str:
    """``name``, or ``name@<tag>`` when the overrides change what is run: runs made with overrides must never
    sit among (and, as reports group by setting, displace) the runs of ``name`` itself. ``own`` are the
    configs without overrides (None when they do not validate alone); overrides that change no experiment
    setting (``--set threads=2``) file under ``name``, as their runs are the same runs."""
    if own is not None and [c.run_id() for c in own] == [c.run_id() for c in cells]:
        return name
    return f"{name}@{override_tag(overrides, set_files)}"

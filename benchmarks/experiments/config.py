"""The run config: one typed, validated description of a federated run.

A config comes from a TOML file or a suite cell, plus ``--set key=value`` overrides with dotted keys. It is
validated completely before any work starts; unknown keys are errors. Each algorithm's hyperparameters
live under ``[algorithms.<name>]``; tables of algorithms other than the chosen one are accepted (a suite
base may carry several) but only the chosen one's table is kept, so it alone enters the run id.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import algorithms
from benchmarks.core import dotted
from benchmarks.core.typed import ConfigError, build
from benchmarks.engine.api import get_algorithm
from benchmarks.engine.settings import (EXECUTION_KEYS, ClientConfig, ExecutionConfig, RunConfig,  # noqa: F401
                                        canonical_json, paper_deviations, validate_cross_fields)


def config_from_dict(data: dict) -> RunConfig:
    """Validate a whole config dict (as read from TOML) into a RunConfig."""
    data = copy.deepcopy(data)
    tables = data.pop("algorithms", {}) or {}
    if not isinstance(tables, dict):
        raise ConfigError("algorithms: must be a table of [algorithms.<name>] tables")
    for name in tables:
        if name not in algorithms.algorithm_names():
            raise ConfigError(f"algorithms.{name}: {name!r} is not one of {', '.join(algorithms.algorithm_names())}")
    if "hparams" in data:
        raise ConfigError("hparams: unknown setting; put hyperparameters under [algorithms.<name>]")
    name = data.get("algorithm", "fedavg")
    if not isinstance(name, str):
        raise ConfigError(f"algorithm: {name!r} must be a string")
    algo_cls = get_algorithm(name)
    execution = build(ExecutionConfig, {key: data.pop(key) for key in EXECUTION_KEYS if key in data}, "")
    if "execution" in data:
        raise ConfigError(f"execution: unknown setting; write {', '.join(EXECUTION_KEYS)} at the top level")
    cfg = build(RunConfig, data, "")
    hparams = build(algo_cls.Params, tables.get(name, {}), f"algorithms.{name}")
    cfg = replace(cfg, hparams=hparams, execution=execution)
    if cfg.partition.seed is None:
        cfg = replace(cfg, partition=replace(cfg.partition, seed=cfg.seed))
    validate_cross_fields(cfg)
    algo_cls.validate(cfg)
    return cfg


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (number, bool, string, list), else the raw text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides to a config dict (a new dict is returned)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set: {item!r} must look like key=value (e.g. partition.alpha=0.04)")
        key, text = item.split("=", 1)
        set_dotted(data, key.strip(), parse_value(text.strip()))
    return data


def set_dotted(data: dict, key: str, value: Any) -> None:
    dotted.set_dotted(data, key, value, error=ConfigError)


def read_toml(path: str | Path, option: str = "--config") -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{option}: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{option}: {path} is not valid TOML ({exc})") from None


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
                set_files: list[str | Path] = ()) -> RunConfig:
    data = read_toml(path) if path else {}
    files = [read_set_file(p) for p in set_files]
    data, used = apply_set_files(data, files, overrides or [])
    for f in files:
        if f not in used:
            raise ConfigError(f"--set-file: {f.path} is for {f.describe_scope()}; the config does not match")
    return config_from_dict(apply_overrides(data, overrides or []))

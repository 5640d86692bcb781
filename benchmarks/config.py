"""The run config: one typed, validated description of a federated run.

A config comes from a TOML file or a suite cell, plus ``--set key=value`` overrides with dotted keys. It is
validated completely before any work starts; unknown keys are errors. Each algorithm's hyperparameters
live under ``[algorithms.<name>]``; tables of algorithms other than the chosen one are accepted (a suite
base may carry several) but only the chosen one's table is kept, so it alone enters the run id.
"""
from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.typed import ConfigError, SearchRange, build, setting, to_dict

DATASET_CHOICES = ("fmnist", "cifar10", "cifar100", "synthetic")
SCHEME_CHOICES = ("iid", "dirichlet", "balanced_dirichlet", "shards", "quantity")
MODEL_CHOICES = ("convnet", "cnn", "resnet18")


@dataclass(frozen=True)
class DatasetConfig:
    name: str = setting("fmnist", choices=DATASET_CHOICES, doc="dataset to federate")
    train_subset: int = setting(0, ge=0, doc="0 = the whole training set; N = a seeded class-stratified subset "
                                             "of N training images (to scale runs down on a CPU)")
    val_fraction: float = setting(0.05, ge=0.0, lt=1.0, doc="labelled server validation split, carved from "
                                                           "the training set before partitioning")
    proxy_fraction: float = setting(0.05, ge=0.0, lt=1.0, doc="unlabelled server proxy split (FedDF), carved "
                                                             "from the training set before partitioning")
    proxy_source: str = setting("train", choices=("train",) + DATASET_CHOICES[:3],
                                doc="'train' = the held-out proxy slice; a dataset name = that dataset's "
                                    "training images (e.g. cifar100 for cifar10). The test set is never allowed")


@dataclass(frozen=True)
class PartitionConfig:
    scheme: str = setting("balanced_dirichlet", choices=SCHEME_CHOICES)
    alpha: float = setting(0.04, gt=0.0, doc="Dirichlet concentration (dirichlet, balanced_dirichlet, quantity)")
    clients: int = setting(80, ge=1)
    seed: int | None = setting(None, ge=0, doc="partition seed; unset = the run seed")
    classes_per_client: int = setting(2, ge=1, doc="shards: classes per client")
    quantity_sizes: str = setting("lognormal", choices=("lognormal", "dirichlet"))
    quantity_sigma: float = setting(1.0, gt=0.0)
    min_size: int = setting(0, ge=0, doc="dirichlet/quantity: minimum samples per client")


@dataclass(frozen=True)
class ModelConfig:
    name: str = setting("convnet", choices=MODEL_CHOICES)
    width: int = setting(128, ge=1)
    depth: int = setting(3, ge=1, doc="convnet only")


@dataclass(frozen=True)
class ClientConfig:
    participation: float = setting(0.4, gt=0.0, le=1.0, doc="fraction of clients sampled per round")
    per_round: int = setting(0, ge=0, doc="clients per round; 0 = use participation")
    local_epochs: int = setting(1, ge=0)
    local_steps: int = setting(0, ge=0, doc="> 0: this many minibatch steps per round instead of epochs")
    batch_size: int = setting(32, ge=1)
    optimizer: str = setting("adam", choices=("sgd", "adam"))
    lr: float = setting(1e-3, gt=0.0, doc="client learning rate; searched by `tune` for every algorithm",
                        tune=SearchRange(1e-4, 1e-2, log=True))
    momentum: float = setting(0.0, ge=0.0, lt=1.0)
    weight_decay: float = setting(0.0, ge=0.0)
    persistent_state: bool = setting(True, doc="keep each client's optimizer state across rounds (DynaFed)")


@dataclass(frozen=True)
class RunConfig:
    algorithm: str = setting("fedavg")
    hparams: Any = None
    dataset: DatasetConfig = DatasetConfig()
    partition: PartitionConfig = PartitionConfig()
    model: ModelConfig = ModelConfig()
    clients: ClientConfig = ClientConfig()
    rounds: int = setting(200, ge=1)
    aggregation: str = setting("uniform", choices=("uniform", "samples"),
                               doc="uniform mean (DynaFed, FedDF) or weighted by client sample count")
    eval_every: int = setting(1, ge=1)
    eval_batch_size: int = setting(1000, ge=1)
    eval_test: bool = setting(True, doc="false = never evaluate (or even hold) the test set; tuning runs use it")
    seed: int = setting(0, ge=0)
    threads: int = setting(1, ge=1, doc="torch intra-op threads for this run")
    checkpoint_every: int = setting(10, ge=0, doc="save a resumable checkpoint every k rounds; 0 = never")
    device: str = setting("cpu", doc="cpu, cuda, cuda:N")
    executor: str = setting("auto", choices=("auto", "sequential", "vectorised"),
                            doc="how clients train: auto picks the fastest measured for the device")
    compile: bool = setting(False, doc="torch.compile the sequential executor's model for full batches: "
                                       "~1.15x faster ConvNet-32 rounds on our CPUs after a 20-30 s cold "
                                       "compile, but ConvNet-128 steps measured 0.89x (perf --steps); "
                                       "float rounding differs from eager")

    @property
    def clients_per_round(self) -> int:
        if self.clients.per_round:
            return self.clients.per_round
        return max(1, int(self.partition.clients * self.clients.participation))

    def to_dict(self) -> dict:
        out = to_dict(self)
        del out["hparams"]
        out["algorithms"] = {self.algorithm: to_dict(self.hparams)}
        return out

    def run_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:10]

    def run_id(self) -> str:
        p = self.partition
        return f"{self.algorithm}_{self.dataset.name}_{p.scheme}-{p.alpha:g}_s{self.seed}_{self.run_hash()}"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _validate_cross_fields(cfg: RunConfig) -> None:
    c = cfg.clients
    if c.local_epochs == 0 and c.local_steps == 0:
        raise ConfigError("clients.local_epochs: 0 with clients.local_steps 0 trains nothing; set one of them > 0")
    if c.per_round > cfg.partition.clients:
        raise ConfigError(f"clients.per_round: {c.per_round} must be <= partition.clients ({cfg.partition.clients})")
    if c.momentum and c.optimizer != "sgd":
        raise ConfigError(f"clients.momentum: {c.momentum} applies only to clients.optimizer 'sgd'")
    if cfg.dataset.val_fraction + cfg.dataset.proxy_fraction >= 0.9:
        raise ConfigError("dataset.val_fraction + dataset.proxy_fraction: must leave clients at least 10% of the data")
    if cfg.dataset.proxy_source == cfg.dataset.name:
        raise ConfigError(f"dataset.proxy_source: {cfg.dataset.name!r} is the run's own dataset; use 'train' "
                          "for its held-out slice")
    if not (cfg.device == "cpu" or cfg.device == "cuda" or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: {cfg.device!r} is not one of cpu, cuda, cuda:N")
    if cfg.compile and (cfg.executor == "vectorised" or (cfg.executor == "auto" and cfg.device != "cpu")):
        raise ConfigError("compile: true applies to the sequential executor only; set executor = \"sequential\"")


def config_from_dict(data: dict) -> RunConfig:
    """Validate a whole config dict (as read from TOML) into a RunConfig."""
    from algorithms import get_algorithm, algorithm_names

    data = copy.deepcopy(data)
    tables = data.pop("algorithms", {}) or {}
    if not isinstance(tables, dict):
        raise ConfigError("algorithms: must be a table of [algorithms.<name>] tables")
    for name in tables:
        if name not in algorithm_names():
            raise ConfigError(f"algorithms.{name}: {name!r} is not one of {', '.join(algorithm_names())}")
    if "hparams" in data:
        raise ConfigError("hparams: unknown setting; put hyperparameters under [algorithms.<name>]")
    name = data.get("algorithm", "fedavg")
    if not isinstance(name, str):
        raise ConfigError(f"algorithm: {name!r} must be a string")
    algo_cls = get_algorithm(name)
    cfg = build(RunConfig, data, "")
    hparams = build(algo_cls.Params, tables.get(name, {}), f"algorithms.{name}")
    cfg = replace(cfg, hparams=hparams)
    if cfg.partition.seed is None:
        cfg = replace(cfg, partition=replace(cfg.partition, seed=cfg.seed))
    _validate_cross_fields(cfg)
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
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = value


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
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"--set-file: {path}: scope key {key!r} is not a config setting")
        node = node[part]
    return node


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


# The DynaFed paper's setting (spec section 2); a run that differs says how, so reports can mark it.
PAPER_SETTING = {
    "partition.scheme": "balanced_dirichlet", "partition.clients": 80, "clients.participation": 0.4,
    "rounds": 200, "clients.local_epochs": 1, "clients.local_steps": 0, "clients.batch_size": 32,
    "clients.optimizer": "adam", "clients.lr": 1e-3, "model.name": "convnet", "model.width": 128,
    "model.depth": 3, "dataset.train_subset": 0,
}


def paper_deviations(cfg: RunConfig) -> list[str]:
    flat = cfg.to_dict()
    out = []
    for key, expected in PAPER_SETTING.items():
        section, _, leaf = key.rpartition(".")
        value = flat[section][leaf] if section else flat[leaf]
        if value != expected:
            out.append(f"{key}={value} (paper {expected})")
    return out

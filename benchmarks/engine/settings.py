"""The typed settings of a federated run: what the engine is given.

``RunConfig`` holds every setting that can change a number (hashed into the run id) and, apart,
``ExecutionConfig`` (threads, checkpoint cadence), which cannot. The experiment layer builds one from
TOML and ``--set`` (``benchmarks.experiments.config``); the engine only reads it, and hands each layer
below it just the part it needs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from benchmarks.core.typed import ConfigError, SearchRange, setting, to_dict
from benchmarks.data.datasets import DATASET_NAMES, DATASETS, REAL_DATASETS
from benchmarks.data.partition import SCHEMES
from benchmarks.models import MODEL_NAMES

# Choices come from the registries, so a new dataset, scheme or model is declared in one module.
DATASET_CHOICES = DATASET_NAMES
SCHEME_CHOICES = SCHEMES
MODEL_CHOICES = MODEL_NAMES


@dataclass(frozen=True)
class DatasetConfig:
    name: str = setting("fmnist", choices=DATASET_CHOICES, doc="dataset to federate")
    train_subset: int = setting(0, ge=0, doc="0 = the whole training set; N = a seeded class-stratified subset "
                                             "of N training images (to scale runs down on a CPU)")
    val_fraction: float = setting(0.05, ge=0.0, lt=1.0, doc="labelled server validation split, carved from "
                                                           "the training set before partitioning")
    proxy_fraction: float = setting(0.05, ge=0.0, lt=1.0, doc="unlabelled server proxy split (FedDF), carved "
                                                             "from the training set before partitioning")
    proxy_source: str = setting("train", choices=("train", "unused") + REAL_DATASETS,
                                doc="'train' = the held-out proxy slice; 'unused' = training images outside "
                                    "train_subset (disjoint from clients and validation), proxy_fraction of the "
                                    "whole training set of them; a dataset name = that dataset's training images "
                                    "(e.g. cifar100 for cifar10). The test set is never allowed")


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
class ExecutionConfig:
    """How a run is executed, as opposed to what it computes: these settings cannot change a number in
    rounds.csv, so they are recorded in summary.json but kept out of the run id. A finished run is
    reused whatever they were, and a run interrupted under one value resumes under another.
    Written at the top level of a config (``threads = 2``, ``--set checkpoint_every=5``)."""
    threads: int = setting(1, ge=1, doc="torch intra-op threads for this run (execution: not hashed)")
    checkpoint_every: int = setting(10, ge=0, doc="save a resumable checkpoint every k rounds; 0 = never "
                                                  "(execution: not hashed)")
    cpu_kernels: str = setting("", choices=("", "default", "avx2", "avx512"),
                               doc="cap torch's and oneDNN's CPU kernels at this set ('' = no cap: what the "
                                   "process inherits). Like threads it changes float rounding only: pin it for the "
                                   "same bits on CPUs of other instruction sets (execution: not hashed)")


EXECUTION_KEYS = tuple(f.name for f in dataclasses.fields(ExecutionConfig))


@dataclass(frozen=True)
class RunConfig:
    """Everything that can change a number of a run (hashed into its id), plus ``execution``."""
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

    execution: ExecutionConfig = ExecutionConfig()

    def experiment_dict(self) -> dict:
        """The settings that can change a number: what config.json holds and the run id hashes."""
        out = to_dict(self)
        del out["hparams"], out["execution"]
        out["algorithms"] = {self.algorithm: to_dict(self.hparams)}
        return out

    def execution_dict(self) -> dict:
        return to_dict(self.execution)

    def to_dict(self) -> dict:
        """The whole config as a user writes it (execution settings at the top level); round-trips
        through ``config_from_dict``."""
        return {**self.experiment_dict(), **self.execution_dict()}

    def run_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.experiment_dict()).encode()).hexdigest()[:10]

    def run_id(self) -> str:
        p = self.partition
        return f"{self.algorithm}_{self.dataset.name}_{p.scheme}-{p.alpha:g}_s{self.seed}_{self.run_hash()}"


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def validate_cross_fields(cfg: RunConfig) -> None:
    c = cfg.clients
    if c.local_epochs == 0 and c.local_steps == 0:
        raise ConfigError("clients.local_epochs: 0 with clients.local_steps 0 trains nothing; set one of them > 0")
    if c.per_round > cfg.partition.clients:
        raise ConfigError(f"clients.per_round: {c.per_round} must be <= partition.clients ({cfg.partition.clients})")
    if c.momentum and c.optimizer != "sgd":
        raise ConfigError(f"clients.momentum: {c.momentum} applies only to clients.optimizer 'sgd'")
    if cfg.dataset.val_fraction + cfg.dataset.proxy_fraction >= 0.9:
        raise ConfigError("dataset.val_fraction + dataset.proxy_fraction: must leave clients at least 10% of the data")
    if cfg.dataset.proxy_source == "unused":
        facts = DATASETS[cfg.dataset.name].facts
        wanted = round(cfg.dataset.proxy_fraction * facts.train_size)
        unused = facts.train_size - cfg.dataset.train_subset if cfg.dataset.train_subset else 0
        if not 0 < wanted <= unused:
            raise ConfigError(f"dataset.proxy_source: 'unused' asks for {wanted} of the {unused} training images "
                              "outside dataset.train_subset; set train_subset > 0 and proxy_fraction to fit")
    if cfg.dataset.proxy_source == cfg.dataset.name:
        raise ConfigError(f"dataset.proxy_source: {cfg.dataset.name!r} is the run's own dataset; use 'train' "
                          "for its held-out slice")
    if not (cfg.device == "cpu" or cfg.device == "cuda" or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device: {cfg.device!r} is not one of cpu, cuda, cuda:N")
    if cfg.compile and (cfg.executor == "vectorised" or (cfg.executor == "auto" and cfg.device != "cpu")):
        raise ConfigError("compile: true applies to the sequential executor only; set executor = \"sequential\"")


# The DynaFed paper's setting (spec section 2); a run that differs says how, so reports can mark it.
PAPER_SETTING = {
    "partition.scheme": "balanced_dirichlet", "partition.clients": 80, "clients.participation": 0.4,
    "rounds": 200, "clients.local_epochs": 1, "clients.local_steps": 0, "clients.batch_size": 32,
    "clients.optimizer": "adam", "clients.lr": 1e-3, "model.name": "convnet", "model.width": 128,
    "model.depth": 3, "dataset.train_subset": 0,
}


def paper_deviations(cfg: RunConfig) -> list[str]:
    flat = cfg.experiment_dict()
    out = []
    for key, expected in PAPER_SETTING.items():
        section, _, leaf = key.rpartition(".")
        value = flat[section][leaf] if section else flat[leaf]
        if value != expected:
            out.append(f"{key}={value} (paper {expected})")
    return out

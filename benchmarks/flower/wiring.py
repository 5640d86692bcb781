"""What the strategy and the client app build from a run config, as hetbench's runner builds it.

The runner (``benchmarks.engine.runner.RoundLoop``) seeds its global model, its client sampler and its
algorithm's context from the run seed by name; these functions use the same names, so a run through
Flower starts from the same weights, samples the same clients and draws the same server streams
(``tests/test_flower_adapter.py`` holds the two to the same parameters). An algorithm is constructed
with a ``ServerContext``; a node gets one that holds none of the server's data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

import algorithms  # noqa: F401  (registers every algorithm, so get_algorithm finds it in any process)
from benchmarks.core.seeding import derive_seed
from benchmarks.core.typed import ConfigError
from benchmarks.engine.api import Reserve, ServerContext, TensorData, get_algorithm
from benchmarks.engine.extra_data import reserve_of
from benchmarks.engine.federation import Federation
from benchmarks.engine.flat import bind_flat
from benchmarks.engine.settings import RunConfig
from benchmarks.models import build_model


@dataclass(frozen=True)
class ServerData:
    """Everything the server side holds, as the runner's server has it: the labelled validation split,
    the unlabelled proxy images, the labelled reserve outside the federation (None without a
    ``train_subset``), the clients' label counts, and the dataset's shape, classes and normalisation.
    There is no test set: evaluate the final parameters on it yourself, as the runner does."""
    val: TensorData
    proxy: TensorData | None
    reserve: Reserve | None
    client_class_counts: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, fed: Federation) -> ServerData:
        return cls(val=fed.val, proxy=fed.proxy,
                   reserve=reserve_of(fed.train, fed.client_indices, fed.val_positions, fed.proxy_positions),
                   client_class_counts=np.array(fed.stats["class_counts"]), num_classes=fed.num_classes,
                   input_shape=fed.input_shape, class_names=tuple(fed.dataset.classes),
                   mean=tuple(fed.dataset.mean), std=tuple(fed.dataset.std))


def check_supported(cfg: RunConfig) -> None:
    """Refuse an algorithm whose clients cannot run apart from its server: the runner shares one
    instance between them, a Flower node has its own."""
    cls = get_algorithm(cfg.algorithm)
    if cls.client_reads_server_state:
        raise ConfigError(f"algorithm: {cfg.algorithm} cannot run under Flower: {cls.client_reads_server_state}")
    if cls.extends_client_data:
        raise ConfigError(f"algorithm: {cfg.algorithm} cannot run under Flower: its clients' extra local data "
                          "is made by the runner's one instance, which a Flower node does not have")


def model_builder(cfg: RunConfig, input_shape: tuple[int, int, int], num_classes: int) -> Callable[[], nn.Module]:
    def new_model() -> nn.Module:
        return build_model(cfg.model.name, input_shape, num_classes, cfg.model.width, cfg.model.depth)
    return new_model


def initial_global_model(cfg: RunConfig, new_model: Callable[[], nn.Module]) -> tuple[nn.Module, torch.Tensor]:
    """The run's initial global model, bound to a flat vector. Seeds torch's global generator as the
    runner does, because server work may draw from it afterwards (DynaFed's matching model)."""
    torch.manual_seed(derive_seed(cfg.seed, "model-init"))
    model = new_model().to(torch.device(cfg.device))
    return model, bind_flat(model)


def client_sampler(cfg: RunConfig) -> np.random.Generator:
    return np.random.default_rng(derive_seed(cfg.seed, "client-sampling"))


def algorithm_context(cfg: RunConfig, new_model: Callable[[], nn.Module], data: ServerData) -> ServerContext:
    return ServerContext(aggregation=cfg.aggregation, clients=cfg.clients, eval_batch_size=cfg.eval_batch_size,
                         rounds=cfg.rounds, num_classes=data.num_classes, input_shape=data.input_shape,
                         device=torch.device(cfg.device), val=data.val, proxy=data.proxy,
                         client_class_counts=data.client_class_counts, build_model=new_model,
                         seed=derive_seed(cfg.seed, "server", cfg.algorithm), mean=data.mean, std=data.std,
                         class_names=data.class_names, reserve=data.reserve)


def node_data(num_classes: int, input_shape: tuple[int, int, int], device) -> ServerData:
    """What a node's copy of the algorithm may see of the server: nothing (no validation images, no
    proxy, no reserve, no label counts), only the dataset's shape."""
    empty = TensorData(torch.empty((0, *input_shape), device=device), torch.empty(0, dtype=torch.long, device=device))
    return ServerData(val=empty, proxy=None, reserve=None,
                      client_class_counts=np.zeros((0, num_classes), dtype=np.int64), num_classes=num_classes,
                      input_shape=input_shape, class_names=(), mean=(0.0,), std=(1.0,))


def new_algorithm(cfg: RunConfig, context: ServerContext):
    return get_algorithm(cfg.algorithm)(cfg.hparams, context)

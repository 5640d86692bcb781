"""The contract between the runner and the algorithms.

An algorithm sees the server's world through :class:`ServerContext` (validation and proxy data, fresh
models, seeded generators, timers) and a client's step through :class:`LocalContext`. The test set is
deliberately absent from both: only the runner evaluates on it.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from benchmarks.seeding import derive_seed


@dataclass
class TensorData:
    """Preloaded, normalised inputs on the run's device; ``y`` is None for unlabelled data."""
    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class LocalContext:
    """What a local objective may know about the step it is computing."""
    round: int
    client_id: int
    step: int
    global_flat: torch.Tensor
    global_params: list[torch.Tensor]
    generator: torch.Generator


@dataclass
class ClientUpdate:
    """A client's result for one round: its trained parameters and what it trained on."""
    client_id: int
    params: torch.Tensor
    num_samples: int
    steps: int
    samples_seen: int
    label_counts: torch.Tensor
    train_loss: float


@dataclass
class ServerContext:
    """Server-side resources for an algorithm. Nothing here reaches the test set."""
    config: object
    num_classes: int
    input_shape: tuple[int, int, int]
    device: torch.device
    val: TensorData
    proxy: TensorData | None
    client_class_counts: np.ndarray
    build_model: Callable[[], nn.Module]
    seed: int
    # The inputs' per-channel normalisation in [0, 1] pixel units, to turn images back into pixels.
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)

    def make_model(self) -> tuple[nn.Module, torch.Tensor]:
        """A fresh model of the run's architecture bound to a flat vector (load a state into it)."""
        from benchmarks.flat import bind_flat
        model = self.build_model().to(self.device)
        return model, bind_flat(model)

    def generator(self, *keys) -> torch.Generator:
        """A torch generator seeded from the run seed and ``keys``: same keys, same stream."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, *keys))
        return gen

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Time a named part of the server's extra work; it is logged as ``server_<part>_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - start

    def log(self, metric: str, value: float) -> None:
        """Record a deterministic server diagnostic for this round (``split=server`` in rounds.csv)."""
        self.diagnostics[metric] = float(value)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: TensorData, batch_size: int = 1000) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of ``model`` on labelled ``data``; restores the model's mode."""
        return evaluate(model, data, batch_size)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data), batch_size):
        x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
        logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    n = max(1, len(data))
    return correct / n, loss_sum / n

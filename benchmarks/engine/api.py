"""The contract between the engine and the algorithms: the only module an algorithm imports.

An algorithm sees the server's world through :class:`ServerContext` (validation and proxy data, fresh
models, seeded generators, timers) and a client's step through :class:`LocalContext`. The test set is
deliberately absent from both: only the runner evaluates on it. The tools an algorithm may use (flat
vectors and optimizers, typed settings, seed derivation, the registry) are re-exported here, so the
import contracts can hold algorithms to this one module.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from benchmarks.core.seeding import derive_seed
from benchmarks.core.typed import ConfigError, SearchRange, setting
from benchmarks.engine.clock import Elapsed, Stopwatch
from benchmarks.engine.flat import FlatOptimizer, bind_flat, flat_grad, unflatten
from benchmarks.engine.registry import algorithm_names, get_algorithm, register
from benchmarks.engine.settings import ClientConfig

__all__ = [
    "Batch", "ClientUpdate", "ConfigError", "FlatOptimizer", "LocalContext", "LocalResult", "Reserve",
    "SearchRange", "ServerContext",
    "TensorData", "algorithm_names", "bind_flat", "derive_seed", "evaluate", "flat_grad", "get_algorithm",
    "register", "series_mean", "setting", "unflatten",
]


@dataclass
class TensorData:
    """Preloaded, normalised inputs on the run's device; ``y`` is None for unlabelled data."""
    x: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Reserve:
    """Labelled training images that no client, no validation split and no proxy split holds: the images
    outside ``dataset.train_subset``, less FedDF's ``unused`` proxy slice. They are gathered from the run's
    training tensor only when asked for, so offering them costs a run nothing. They stand for public data
    from the clients' distribution (an oracle baseline's draws, a server-trained generator's training set);
    an algorithm that reads them says so in its docstring."""
    source: torch.Tensor
    positions: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.positions)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """The normalised images at ``index`` (positions within the reserve, as for ``y``)."""
        return self.source[self.positions[index.to(self.positions.device)]]


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class LocalContext:
    """What a local objective may know about the step it is computing.

    ``config`` is what the algorithm's ``client_config`` sent to every client of the round (floats or
    tensors); ``state`` is this client's own persistent state (``init_client_state``), whose tensors
    the objective may read. Under the vectorised executor ``state`` holds this client's row while
    ``client_id`` and ``generator`` cannot be read (they differ between the clients of one call).
    """
    round: int
    client_id: int
    step: int
    global_flat: torch.Tensor
    global_params: list[torch.Tensor]
    generator: torch.Generator
    config: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


@dataclass
class LocalResult:
    """A client's round as ``finish_client`` sees it, after its last local step."""
    round: int
    client_id: int
    start: torch.Tensor
    params: torch.Tensor
    steps: int
    num_samples: int
    config: dict
    state: dict


@dataclass
class ClientUpdate:
    """What a client sends back for one round: its trained parameters, what it trained on, and its
    algorithm's ``payload`` (tensors beyond the parameters, e.g. SCAFFOLD's control-variate change)."""
    client_id: int
    params: torch.Tensor
    num_samples: int
    steps: int
    samples_seen: int
    label_counts: torch.Tensor
    train_loss: float
    payload: dict = field(default_factory=dict)


@dataclass
class ServerContext:
    """Server-side resources for an algorithm. Nothing here reaches the test set.

    Of the run's settings an algorithm sees only these few (its own hyperparameters come separately):
    the aggregation rule, the clients' training settings, the evaluation batch size and the rounds.
    """
    aggregation: str
    clients: ClientConfig
    eval_batch_size: int
    rounds: int
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
    # The dataset's class names, in label order (text prompts of generators).
    class_names: tuple[str, ...] = ()
    # Labelled training images no client, validation or proxy split holds (None when there are none).
    reserve: Reserve | None = None
    timings: dict[str, Elapsed] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    # Where a long server step says how far it is (the runner shows it beside the round bar); never results.
    show_status: Callable[[str], None] = field(default=lambda text: None, repr=False)
    _scratch: dict = field(default_factory=dict, repr=False)

    def make_model(self) -> tuple[nn.Module, torch.Tensor]:
        """A fresh model of the run's architecture bound to a flat vector (load a state into it)."""
        model = self.build_model().to(self.device)
        return model, bind_flat(model)

    def scratch_model(self, key: str) -> tuple[nn.Module, torch.Tensor]:
        """One reusable model per ``key`` to load client parameters into (teachers, scoring). Built under a
        forked RNG so the run's global stream is untouched; its initial weights are always overwritten."""
        if key not in self._scratch:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, key))
                self._scratch[key] = self.make_model()
        return self._scratch[key]

    def generator(self, *keys) -> torch.Generator:
        """A torch generator seeded from the run seed and ``keys``: same keys, same stream."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, *keys))
        return gen

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Time a named part of the server's extra work; it is logged as ``server_<part>_seconds`` (wall)
        and ``server_<part>_cpu_seconds``."""
        watch = Stopwatch()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, Elapsed()) + watch.elapsed()

    def log(self, metric: str, value: float) -> None:
        """Record a deterministic server diagnostic for this round (``split=server`` in rounds.csv)."""
        self.diagnostics[metric] = float(value)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: TensorData, batch_size: int = 1000) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of ``model`` on labelled ``data``; restores the model's mode."""
        return evaluate(model, data, batch_size)


def series_mean(series: dict[str, dict[int, float]], key: str) -> float:
    """Mean over rounds of one diagnostic series (NaN when the run never logged it)."""
    values = series.get(key, {})
    return sum(values.values()) / len(values) if values else float("nan")


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

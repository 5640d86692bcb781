"""Local training of a round's clients.

The sequential executor owns one working model whose parameters are views of a flat vector: a client
starts with one ``copy_`` of the global vector, steps with a flat optimizer, and hands back a clone of
its vector. Minibatches are index gathers on the preloaded, normalised training tensor (no DataLoader).
The local objective is the algorithm's ``local_loss(model, batch, ctx)``, so a vectorised executor can
run the same objectives over stacked client parameters.

Per client the executor keeps two persistent stores, both checkpointed through ``client_states``: the
optimizer state (when ``clients.persistent_state``) and the algorithm's own client state
(``init_client_state``; always persistent, since an algorithm that declares state needs it kept). After
the last step the algorithm's ``finish_client`` may update that state and returns the payload the
client sends back with its parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.engine.api import Batch, ClientUpdate, LocalContext, LocalResult, TensorData
from benchmarks.engine.flat import FlatOptimizer, bind_flat, flat_grad, unflatten
from benchmarks.core.seeding import derive_seed


def client_batches(indices: torch.Tensor, batch_size: int, local_epochs: int, local_steps: int,
                   generator: torch.Generator) -> list[torch.Tensor]:
    """The index batches one client trains on this round: ``local_epochs`` shuffled passes (last batch
    may be short, as a DataLoader without drop_last), or exactly ``local_steps`` batches drawn from
    successive shuffled passes when ``local_steps`` > 0."""
    n = len(indices)
    batches: list[torch.Tensor] = []
    if n == 0:
        return batches
    epochs = local_epochs if local_steps == 0 else -1
    while True:
        order = indices[torch.randperm(n, generator=generator)]
        for start in range(0, n, batch_size):
            if local_steps and len(batches) == local_steps:
                return batches
            batches.append(order[start:start + batch_size])
        epochs -= 1
        if epochs == 0:
            return batches


class SequentialExecutor:
    """Trains clients one after another on one reusable model."""

    name = "sequential"

    def __init__(self, model: nn.Module, train: TensorData, client_indices: list[torch.Tensor],
                 client_cfg, num_classes: int, seed: int):
        self.model = model
        self.flat = bind_flat(model)
        self.params = list(model.parameters())
        self.train = train
        self.client_indices = client_indices
        self.cfg = client_cfg
        self.num_classes = num_classes
        self.seed = seed
        self.optimizer = FlatOptimizer(client_cfg.optimizer, client_cfg.lr, client_cfg.momentum,
                                       client_cfg.weight_decay)
        self.optimizer_states: dict[int, dict] = {}
        self.algorithm_states: dict[int, dict] = {}

    def describe(self) -> dict:
        """What summary.json records about how clients were trained."""
        return {"executor": self.name, "executor_fallback": None}

    def fallback_state(self) -> dict:
        return {}

    def restore_fallback(self, state: dict) -> None:
        """Nothing to restore: the sequential executor never falls back."""

    def use_data(self, train: TensorData, client_indices: list[torch.Tensor]) -> None:
        """Train clients on ``train`` at ``client_indices`` from now on (the runner's extended local data)."""
        self.train, self.client_indices = train, client_indices

    @property
    def client_states(self) -> dict:
        """Every persistent per-client store, as a checkpoint holds it."""
        return {"optimizer": self.optimizer_states, "algorithm": self.algorithm_states}

    @client_states.setter
    def client_states(self, states: dict) -> None:
        self.optimizer_states, self.algorithm_states = states["optimizer"], states["algorithm"]

    def optimizer_state(self, client_id: int) -> dict:
        if not self.cfg.persistent_state:
            return self.optimizer.init_state(self.flat)
        if client_id not in self.optimizer_states:
            self.optimizer_states[client_id] = self.optimizer.init_state(self.flat)
        return self.optimizer_states[client_id]

    def algorithm_state(self, client_id: int, global_flat: torch.Tensor, algorithm) -> dict:
        """The client's algorithm state, created by ``init_client_state`` the first time it is sampled.
        Not stored here: the caller stores it once the client's round has finished."""
        if client_id in self.algorithm_states:
            return self.algorithm_states[client_id]
        return algorithm.init_client_state(client_id, global_flat)

    def train_round(self, rnd: int, client_ids: list[int], global_flat: torch.Tensor, algorithm,
                    config: dict | None = None) -> list[ClientUpdate]:
        global_params = unflatten(global_flat, self.params)
        return [self.train_client(rnd, cid, global_flat, global_params, algorithm, config or {})
                for cid in client_ids]

    def train_client(self, rnd: int, client_id: int, global_flat: torch.Tensor,
                     global_params: list[torch.Tensor], algorithm, config: dict) -> ClientUpdate:
        with torch.no_grad():
            self.flat.copy_(global_flat)
        self.model.train()
        state = self.optimizer_state(client_id)
        algo_state = {key: value.clone() for key, value in
                      self.algorithm_state(client_id, global_flat, algorithm).items()}
        generator = torch.Generator(device="cpu")
        generator.manual_seed(derive_seed(self.seed, "client", rnd, client_id))
        indices = self.client_indices[client_id]
        batches = client_batches(indices, self.cfg.batch_size, self.cfg.local_epochs, self.cfg.local_steps,
                                 generator)
        label_counts = torch.zeros(self.num_classes, dtype=torch.int64)
        loss_sum, seen = 0.0, 0
        for step, idx in enumerate(batches):
            idx_dev = idx.to(self.train.x.device, non_blocking=True)
            batch = Batch(self.train.x[idx_dev], self.train.y[idx_dev])
            ctx = LocalContext(rnd, client_id, step, global_flat, global_params, generator, config, algo_state)
            loss = algorithm.local_loss(self.model, batch, ctx)
            grad = flat_grad(loss, self.params)
            self.optimizer.step(self.flat, grad, state)
            correction = algorithm.step_correction(config, algo_state)
            if correction is not None:
                with torch.no_grad():
                    self.flat.sub_(correction, alpha=self.optimizer.lr)
            loss_sum += loss.item()
            seen += len(idx)
            label_counts += torch.bincount(self.train.y[idx_dev].cpu(), minlength=self.num_classes)
        params = self.flat.detach().clone()
        payload = finish_client(algorithm, self.algorithm_states,
                                LocalResult(rnd, client_id, global_flat, params, len(batches), len(indices), config,
                                            algo_state))
        return ClientUpdate(client_id=client_id, params=params, num_samples=len(indices),
                            steps=len(batches), samples_seen=seen, label_counts=label_counts,
                            train_loss=loss_sum / max(1, len(batches)), payload=payload)


def finish_client(algorithm, stored: dict[int, dict], result: LocalResult) -> dict:
    """Let the algorithm close the client's round (it may update ``result.state``), store the state if
    the algorithm keeps one, and return the client's payload."""
    payload = algorithm.finish_client(result)
    if result.state:
        stored[result.client_id] = result.state
    return payload

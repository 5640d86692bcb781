"""Local training of a round's clients.

The sequential executor owns one working model whose parameters are views of a flat vector: a client
starts with one ``copy_`` of the global vector, steps with a flat optimizer, and hands back a clone of
its vector. Minibatches are index gathers on the preloaded, normalised training tensor (no DataLoader).
The local objective is the algorithm's ``local_loss(model, batch, ctx)``, so a vectorised executor can
later run the same objectives over stacked client parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.api import Batch, ClientUpdate, LocalContext, TensorData
from benchmarks.flat import FlatOptimizer, bind_flat, flat_grad, unflatten
from benchmarks.seeding import derive_seed


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
        self.client_states: dict[int, dict] = {}

    def optimizer_state(self, client_id: int) -> dict:
        if not self.cfg.persistent_state:
            return self.optimizer.init_state(self.flat)
        if client_id not in self.client_states:
            self.client_states[client_id] = self.optimizer.init_state(self.flat)
        return self.client_states[client_id]

    def train_round(self, rnd: int, client_ids: list[int], global_flat: torch.Tensor, algorithm) -> list[ClientUpdate]:
        global_params = unflatten(global_flat, self.params)
        return [self.train_client(rnd, cid, global_flat, global_params, algorithm) for cid in client_ids]

    def train_client(self, rnd: int, client_id: int, global_flat: torch.Tensor,
                     global_params: list[torch.Tensor], algorithm) -> ClientUpdate:
        with torch.no_grad():
            self.flat.copy_(global_flat)
        self.model.train()
        state = self.optimizer_state(client_id)
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
            ctx = LocalContext(rnd, client_id, step, global_flat, global_params, generator)
            loss = algorithm.local_loss(self.model, batch, ctx)
            grad = flat_grad(loss, self.params)
            self.optimizer.step(self.flat, grad, state)
            loss_sum += loss.item()
            seen += len(idx)
            label_counts += torch.bincount(self.train.y[idx_dev].cpu(), minlength=self.num_classes)
        return ClientUpdate(client_id=client_id, params=self.flat.detach().clone(), num_samples=len(indices),
                            steps=len(batches), samples_seen=seen, label_counts=label_counts,
                            train_loss=loss_sum / max(1, len(batches)))


def make_executor(cfg, model: nn.Module, train: TensorData, client_indices: list[torch.Tensor], num_classes: int):
    """The executor the config asks for. ``auto`` is vectorised on CUDA, where stacking a round's small
    client models fills the device, and sequential elsewhere (on our 2-core CPUs the plain loop over
    clients beats vmap and its grouped convolutions: ``python -m benchmarks perf --executor all``)."""
    kind = cfg.executor
    if kind == "auto":
        kind = "vectorised" if torch.device(cfg.device).type == "cuda" else "sequential"
    if kind == "vectorised":
        from benchmarks.vectorised import VectorisedExecutor  # it builds on this module
        return VectorisedExecutor(model, train, client_indices, cfg.clients, num_classes, cfg.seed)
    if cfg.compile:
        compile_full_batches(model, cfg.clients.batch_size)
    return SequentialExecutor(model, train, client_indices, cfg.clients, num_classes, cfg.seed)


def compile_full_batches(model: nn.Module, batch_size: int) -> None:
    """Route ``model``'s full batches through a static-shape ``torch.compile`` of its forward, and the
    short last batches of epochs through the eager forward.

    Compiling every batch makes dynamo recompile for dynamic shapes after the first short batch, and those
    kernels were slower than eager on our CPUs (ConvNet-32 step: 58 ms, eager 44 ms, static compile 35 ms).
    The parameters stay views of the flat vector, so each client's ``copy_`` reaches the compiled graph.
    """
    eager = model.forward
    compiled = torch.compile(eager, dynamic=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return compiled(x) if len(x) == batch_size else eager(x)

    model.forward = forward

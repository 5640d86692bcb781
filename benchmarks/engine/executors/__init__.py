"""Client executors: how a round's clients train. ``make_executor`` picks one for a run."""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.engine.api import TensorData
from benchmarks.engine.executors.sequential import SequentialExecutor
from benchmarks.engine.executors.vectorised import VectorisedExecutor
from benchmarks.engine.settings import ClientConfig


def make_executor(kind: str, device, clients: ClientConfig, compile: bool, seed: int, model: nn.Module,
                  train: TensorData, client_indices: list[torch.Tensor], num_classes: int):
    """The executor ``kind`` names. ``auto`` is vectorised on CUDA, where stacking a round's small
    client models fills the device, and sequential elsewhere (on our 2-core CPUs the plain loop over
    clients beats vmap and its grouped convolutions: ``hetbench perf --executor all``)."""
    if kind == "auto":
        kind = "vectorised" if torch.device(device).type == "cuda" else "sequential"
    if kind == "vectorised":
        return VectorisedExecutor(model, train, client_indices, clients, num_classes, seed)
    if compile:
        compile_full_batches(model, clients.batch_size)
    return SequentialExecutor(model, train, client_indices, clients, num_classes, seed)


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

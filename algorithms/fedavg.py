"""FedAvg (McMahan et al., 2017): the base every other algorithm subclasses.

An algorithm overrides only what differs from FedAvg:
- ``local_loss(model, batch, ctx)``: the client objective of one minibatch step;
- ``aggregate(rnd, global_flat, updates)``: how client parameters become the global ones;
- ``before_round`` / ``after_aggregate``: server work around a round (its time is logged as extra
  server time; use ``self.server.timed(part)`` to name parts);
- ``server_state`` / ``load_server_state`` / ``write_artifacts``: state that outlives a round.

Aggregation weights follow the run config: ``uniform`` (the mean over the round's clients, as DynaFed's
and FedDF's official code) or ``samples`` (weighted by client dataset size, as FedAvg's paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.registry import register
from benchmarks.api import Batch, ClientUpdate, LocalContext, ServerContext


@dataclass(frozen=True)
class FedAvgParams:
    """FedAvg has no hyperparameters of its own (client lr, epochs, etc. are run settings)."""


@register("fedavg")
class FedAvg:
    Params = FedAvgParams
    name = "fedavg"

    def __init__(self, params, server: ServerContext):
        self.params = params
        self.server = server
        self.config = server.config

    @classmethod
    def validate(cls, cfg) -> None:
        """Cross-check the run config for this algorithm; raise ConfigError on a bad combination."""

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        """Seconds this algorithm adds to a run beyond client training and evaluation, from the run's
        ``work`` and the ``costs`` measured here (see ``benchmarks.estimate``). FedAvg adds nothing.
        FedProx inherits this; its proximal term cost 2% a round in the cpu suite. FedGen inherits it too
        and so is underestimated: its teacher term and generator cost 17% a round there."""
        return 0.0

    # ---- client side -------------------------------------------------------------------------
    def local_loss(self, model: nn.Module, batch: Batch, ctx: LocalContext) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)

    # ---- server side -------------------------------------------------------------------------
    def setup(self, global_model: nn.Module, global_flat: torch.Tensor) -> None:
        """Called once with the initial global model, before round 1."""

    def before_round(self, rnd: int, global_model: nn.Module, global_flat: torch.Tensor) -> None:
        """Server work at the start of round ``rnd`` (1-based), before clients train."""

    def aggregation_weights(self, updates: list[ClientUpdate]) -> torch.Tensor:
        if self.config.aggregation == "samples":
            sizes = torch.tensor([u.num_samples for u in updates], dtype=torch.float64)
            return sizes / sizes.sum()
        return torch.full((len(updates),), 1.0 / len(updates), dtype=torch.float64)

    def aggregate(self, rnd: int, global_flat: torch.Tensor, updates: list[ClientUpdate]) -> torch.Tensor:
        weights = self.aggregation_weights(updates)
        out = torch.zeros_like(global_flat)
        for w, update in zip(weights.tolist(), updates):
            out.add_(update.params, alpha=w)
        return out

    def after_aggregate(self, rnd: int, global_model: nn.Module, global_flat: torch.Tensor,
                        updates: list[ClientUpdate]) -> None:
        """Server work after aggregation; may change ``global_flat`` in place."""

    # ---- state -------------------------------------------------------------------------------
    def server_state(self) -> dict:
        return {}

    def load_server_state(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} has no server state to load")

    def write_artifacts(self, run_dir: Path) -> list[str]:
        """Write files worth keeping with the run; return their names."""
        return []

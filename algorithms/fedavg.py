"""FedAvg (McMahan et al., 2017): the base every other algorithm subclasses.

An algorithm overrides only what differs from FedAvg. The hooks, in the order a round calls them:

once, before round 1
- ``client_summary(client_id, x, y)``: what a client shares with the server from its own data, only for algorithms
  that set ``shares_client_data`` (FedMix's mean images); ``receive_client_summaries(summaries)``;
- ``extra_local_data(client_id, x, y)``: labelled examples a client adds to its own data and trains on from
  then on, only for algorithms that set ``extends_client_data`` (ReGL's synthetic images); called at the
  start of the first round a process runs, so its cost is timed in that round (and redone on resume);
server side, before the clients
- ``before_round(rnd, model, flat)``: server work at the start of a round (DynaFed's synthesis);
- ``client_config(rnd)``: what every client of the round receives besides the global parameters
  (floats or tensors, e.g. a decayed coefficient or SCAFFOLD's server control variate);
client side (run by the executor, sequentially or vectorised)
- ``init_client_state(client_id, flat)``: a client's persistent state, tensors created the first time
  it is sampled, kept across rounds, checkpointed and stacked under vmap like optimizer state;
- ``local_loss(model, batch, ctx)``: the objective of one minibatch step (``ctx.config``, ``ctx.state``);
- ``step_correction(config, state)``: a displacement applied after every optimizer step, outside the
  optimizer, as ``params -= lr * correction`` (SCAFFOLD's control-variate correction); None for none;
- ``finish_client(result)``: after the last step; may update ``result.state`` and returns the payload
  the client sends back beyond its parameters;
server side, after the clients
- ``aggregate(rnd, flat, updates)``: how the clients' parameters (and payloads) become the global ones;
- ``after_aggregate(rnd, model, flat, updates)``: server work on the aggregate (FedDF, DynaFed);
- ``server_state`` / ``load_server_state`` / ``write_artifacts``: state that outlives a round.
Server hook time is logged as extra server time (``self.server.timed(part)`` names parts).

Aggregation weights follow the run config: ``uniform`` (the mean over the round's clients, as DynaFed's
and FedDF's official code) or ``samples`` (weighted by client dataset size, as FedAvg's paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.engine.api import (Batch, ClientUpdate, LocalContext, LocalResult, register, series_mean,
                                   ServerContext, TensorData)


@dataclass(frozen=True)
class FedAvgParams:
    """FedAvg has no hyperparameters of its own (client lr, epochs, etc. are run settings)."""


@register("fedavg", title="FedAvg")
class FedAvg:
    Params = FedAvgParams
    name = "fedavg"
    # Hyperparameters that make a run on the tests' tiny data take seconds (the conformance tests of
    # every registered algorithm use them); an algorithm with an expensive server step overrides this.
    tiny_budget: dict = {}
    # Run settings the conformance tests merge into their tiny config, for an algorithm that cannot run
    # on it as it is (ReGL's oracle draws from images outside a dataset.train_subset).
    tiny_settings: dict = {}
    # Why the vectorised executor cannot train this algorithm's clients, if it cannot (None: it can, and
    # the conformance test holds it to the sequential executor's numbers).
    vectorised_opt_out: str | None = None
    # Whether clients share a summary of their data with the server before round 1 (a privacy
    # relaxation FedAvg does not make); the runner then calls client_summary for every client.
    shares_client_data: bool = False
    # Why this algorithm's client hooks read server state that ``client_config`` does not send, if they do
    # (None: they read only ``ctx.config``, ``ctx.state`` and the hyperparameters). The runner shares one
    # instance between server and clients, so it never notices; the Flower adapter refuses such algorithms.
    client_reads_server_state: str | None = None
    # Whether clients add examples of their own making to their local data (``extra_local_data``); the
    # runner then calls it for every client before the first round it runs.
    extends_client_data: bool = False

    def __init__(self, params, server: ServerContext):
        self.params = params
        self.server = server

    @classmethod
    def validate(cls, cfg) -> None:
        """Cross-check the run config for this algorithm; raise ConfigError on a bad combination."""

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        """Seconds this algorithm adds to a run beyond client training and evaluation, from the run's
        ``work`` and the ``costs`` measured here (see ``benchmarks.experiments.estimate``). FedAvg adds nothing.
        FedProx inherits this; its proximal term cost 2% a round in the cpu suite. FedGen inherits it too
        and so is underestimated: its teacher term and generator cost 17% a round there."""
        return 0.0

    # ---- client side -------------------------------------------------------------------------
    def client_config(self, rnd: int) -> dict:
        """What every client of round ``rnd`` receives with the global parameters (``ctx.config``)."""
        return {}

    def init_client_state(self, client_id: int, global_flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A client's persistent state (tensors, one layout for all clients), made when it is first sampled."""
        return {}

    def local_loss(self, model: nn.Module, batch: Batch, ctx: LocalContext) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)

    def step_correction(self, config: dict, state: dict) -> torch.Tensor | None:
        """Subtracted, times the client learning rate, from the parameters after every local optimizer
        step, so optimizers' momentum and normalisation never see it. Must broadcast: under the vectorised
        executor ``state`` holds (clients, ...) rows. FedAvg corrects nothing."""
        return None

    def finish_client(self, result: LocalResult) -> dict[str, torch.Tensor]:
        """After a client's last local step: update ``result.state`` in place if the algorithm keeps one,
        and return the payload the client sends back besides its parameters (``ClientUpdate.payload``)."""
        return {}

    def client_summary(self, client_id: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """What one client shares from its whole local data (``x``, ``y``) before round 1; called only
        when ``shares_client_data`` is set."""
        return {}

    def receive_client_summaries(self, summaries: list[dict[str, torch.Tensor]]) -> None:
        """Every client's ``client_summary``, in client order, on start and on resume."""

    def extra_local_data(self, client_id: int, x: torch.Tensor, y: torch.Tensor) -> TensorData | None:
        """Labelled examples (normalised like ``x``, on its device) that client ``client_id`` adds to its whole
        local data (``x``, ``y``) and trains on in every round; None for none. Called only when
        ``extends_client_data`` is set, for every client in client order, once per process: it must be
        deterministic (or restored from ``load_server_state``, which runs first on resume)."""
        return None

    # ---- server side -------------------------------------------------------------------------
    def setup(self, global_model: nn.Module, global_flat: torch.Tensor) -> None:
        """Called once with the initial global model, before round 1."""

    def before_round(self, rnd: int, global_model: nn.Module, global_flat: torch.Tensor) -> None:
        """Server work at the start of round ``rnd`` (1-based), before clients train."""

    def aggregation_weights(self, updates: list[ClientUpdate]) -> torch.Tensor:
        if self.server.aggregation == "samples":
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

    # ---- diagnostics ---------------------------------------------------------------------------
    def mechanism(self, series: dict[str, dict[int, float]]) -> dict:
        """Whether this algorithm's mechanism engaged in the run, judged from its rounds.csv series
        (``"train.drift"``, ``"train.local_steps"``, ``"server.<metric>"``: round -> value). Returns
        ``engaged`` (True, False, or None where there is no mechanism to judge) and one line of evidence.
        FedAvg is the baseline: nothing to engage, the drift and local steps are the evidence."""
        return {"engaged": None, "evidence": f"baseline; mean client drift {series_mean(series, 'train.drift'):.3g}, "
                                             f"{series_mean(series, 'train.local_steps'):.1f} local steps a round"}

    # ---- state -------------------------------------------------------------------------------
    def server_state(self) -> dict:
        return {}

    def load_server_state(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} has no server state to load")

    def write_artifacts(self, run_dir: Path) -> list[str]:
        """Write files worth keeping with the run; return their names."""
        return []

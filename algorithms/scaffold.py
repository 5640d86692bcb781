"""SCAFFOLD (Karimireddy et al., ICML 2020): control variates that cancel client drift.

The server keeps a control variate c, each client its own c_i (zeros at the start; a client that sits
out a round keeps its c_i). Procedure, as in NIID-Bench's ``train_net_scaffold`` (Xtra-Computing), the
reference the issue names, with the FedDyn authors' repository consulted for the global step size:
1. every local step is followed, outside the optimizer, by ``w <- w - lr * (c - c_i)``;
2. after K local steps (the number actually taken), option II: ``c_i+ = c_i - c + (x - y_i) / (K lr)``;
   the client sends back its parameters y_i and ``delta c_i = c_i+ - c_i``;
3. the server moves ``x <- x + global_lr * (aggregate(y_i) - x)`` (aggregate: the run's aggregation
   rule) and ``c <- c + (1 / N) * sum over the round's clients of delta c_i``, N the number of clients.

Adam. SCAFFOLD is derived for SGD; our shared client setting is DynaFed's persistent Adam. Two forms:
- ``correction = "after_step"`` (default, NIID-Bench's): the correction bypasses the optimizer. With
  SGD this is exactly SCAFFOLD. With Adam, option II then makes c_i the client's mean *Adam update
  direction* (x - y_i = lr * sum of Adam steps + K lr (c - c_i)), so c - c_i is in the same units as
  the steps it corrects: the average direction of all clients minus this client's own.
- ``correction = "gradient"`` (the FedDyn repository's): the linear term <w, c - c_i> is added to the
  loss, so the correction passes through the optimizer. With SGD this equals the first form; with Adam
  the variates stay in update units while the corrected quantity is a gradient, so the correction can
  dominate Adam's normalisation: offered for comparison, not as the default.
Both are exact SCAFFOLD under plain SGD (tested); under Adam neither is what the paper analyses.

Deviations and choices:
- Variates start at zero (NIID-Bench starts both at a fresh network's weights, which leaves a
  (1 - |S|/N) w_0 bias in c under partial participation).
- Only parameters are corrected (our default models carry no buffers).
- NIID-Bench weights the model average by client size and has no global step size; we follow the
  run's ``aggregation`` setting (uniform by default) and default ``global_lr`` to 1, which is NIID-Bench.

Diagnostic: the correction's share of each client's update, K lr ||c - c_i|| / ||y_i - x|| (zero in
round 1, when every variate is zero), and the mean ||c - c_i||.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import ConfigError, register, SearchRange, series_mean, setting


@dataclass(frozen=True)
class ScaffoldParams:
    global_lr: float = setting(1.0, gt=0.0, doc="server step size on the aggregated update (1: move to the "
                                                "aggregate, as NIID-Bench)", tune=SearchRange(0.5, 2.0))
    correction: str = setting("after_step", choices=("after_step", "gradient"),
                              doc="apply c - c_i after each optimizer step (NIID-Bench) or as a loss term "
                                  "through the optimizer (FedDyn repository)")


@register("scaffold", title="SCAFFOLD")
class Scaffold(FedAvg):
    Params = ScaffoldParams

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.clients.optimizer == "sgd" and cfg.clients.momentum > 0 and cfg.hparams.correction == "gradient":
            raise ConfigError("algorithms.scaffold.correction: 'gradient' with SGD momentum feeds the correction "
                              "into the momentum; use 'after_step' (allowed: after_step, gradient)")

    def setup(self, global_model, global_flat):
        self.control = torch.zeros_like(global_flat)

    @property
    def num_clients(self) -> int:
        return len(self.server.client_class_counts)

    # ---- client side -------------------------------------------------------------------------
    def client_config(self, rnd):
        return {"control": self.control}

    def init_client_state(self, client_id, global_flat):
        return {"control": torch.zeros_like(global_flat)}

    def local_loss(self, model, batch, ctx):
        loss = super().local_loss(model, batch, ctx)
        if self.params.correction != "gradient":
            return loss
        flat_now = torch.cat([p.reshape(-1) for p in model.parameters()])
        return loss + (flat_now * (ctx.config["control"] - ctx.state["control"])).sum()

    def step_correction(self, config, state):
        if self.params.correction != "after_step":
            return None
        return config["control"] - state["control"]

    def finish_client(self, result):
        lr = self.server.clients.lr
        steps = max(1, result.steps)
        old, server_control = result.state["control"], result.config["control"]
        new = old - server_control + (result.start - result.params) / (steps * lr)
        result.state["control"] = new
        update_norm = (result.params - result.start).norm()
        correction_norm = (server_control - old).norm()
        share = steps * lr * correction_norm / update_norm if update_norm > 0 else torch.zeros(())
        return {"delta_control": new - old, "correction_norm": correction_norm.reshape(1),
                "correction_share": share.reshape(1)}

    # ---- server side -------------------------------------------------------------------------
    def aggregate(self, rnd, global_flat, updates):
        averaged = super().aggregate(rnd, global_flat, updates)
        deltas = torch.stack([u.payload["delta_control"] for u in updates]).sum(0)
        self.control = self.control + deltas / self.num_clients
        if self.params.global_lr == 1.0:
            return averaged
        return global_flat + self.params.global_lr * (averaged - global_flat)

    def after_aggregate(self, rnd, global_model, global_flat, updates):
        mean = (lambda key: sum(float(u.payload[key]) for u in updates) / len(updates))  # noqa: E731
        self.server.log("scaffold_correction_norm", mean("correction_norm"))
        self.server.log("scaffold_correction_share", mean("correction_share"))

    # The correction must move each client by at least this share of its update to count as engaged.
    ENGAGED_SHARE = 0.05

    def mechanism(self, series):
        shares = series.get("server.scaffold_correction_share", {})
        later = {r: v for r, v in shares.items() if r > 1}  # round 1 has zero variates by construction
        if not later:
            return {"engaged": False, "evidence": "no round after the first, so the variates never acted"}
        share = sum(later.values()) / len(later)
        return {"engaged": bool(share >= self.ENGAGED_SHARE),
                "evidence": f"the control-variate correction moved clients by {100 * share:.3g}% of their update "
                            f"(rounds 2+, mean; engaged at >= {100 * self.ENGAGED_SHARE:g}%); mean client drift "
                            f"{series_mean(series, 'train.drift'):.3g}"}

    # ---- state -------------------------------------------------------------------------------
    def server_state(self):
        return {"control": self.control}

    def load_server_state(self, state):
        self.control = state["control"]

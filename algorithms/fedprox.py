"""FedProx (Li et al., 2020): FedAvg plus a proximal term in the local objective.

Convention: loss = CE + (mu / 2) * ||w - w_global||^2, so the gradient gains mu * (w - w_global).
DynaFed's code adds lambda * ||dw||^2 (mu = 2 * lambda); FedGen's adds an extra 1e-3 L2 term, which we
do not (spec section 6). The paper's mu is unknown; 0.01 is the common default of FedProx's own sweeps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import register, SearchRange, series_mean, setting


@dataclass(frozen=True)
class FedProxParams:
    mu: float = setting(0.01, ge=0.0, doc="proximal coefficient, in the mu/2 * ||w - w_global||^2 convention",
                        tune=SearchRange(1e-4, 1.0, log=True))


@register("fedprox", title="FedProx")
class FedProx(FedAvg):
    Params = FedProxParams

    def local_loss(self, model, batch, ctx):
        loss = super().local_loss(model, batch, ctx)
        if self.params.mu == 0.0:
            return loss
        flat_now = torch.cat([p.reshape(-1) for p in model.parameters()])
        return loss + 0.5 * self.params.mu * (flat_now - ctx.global_flat).pow(2).sum()

    # ---- diagnostics: how much the proximal term weighs at the end of local training -------------
    def finish_client(self, result):
        penalty = 0.5 * self.params.mu * (result.params - result.start).pow(2).sum()
        return {**super().finish_client(result), "proximal_penalty": penalty.reshape(1)}

    def after_aggregate(self, rnd, global_model, global_flat, updates):
        super().after_aggregate(rnd, global_model, global_flat, updates)
        penalties = [float(u.payload["proximal_penalty"]) for u in updates]
        self.server.log("proximal_penalty", sum(penalties) / len(penalties))

    # The proximal term must weigh at least this share of the local loss to count as engaged.
    ENGAGED_SHARE = 0.01

    def mechanism(self, series):
        penalty, loss = series_mean(series, "server.proximal_penalty"), series_mean(series, "train.loss")
        share = penalty / loss if loss > 0 else float("nan")
        return {"engaged": bool(share >= self.ENGAGED_SHARE),
                "evidence": f"proximal penalty at the clients' final parameters is {100 * share:.2g}% of the "
                            f"local loss (engaged at >= {100 * self.ENGAGED_SHARE:g}%); "
                            f"{series_mean(series, 'train.local_steps'):.1f} local steps a round"}

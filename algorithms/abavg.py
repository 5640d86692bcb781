"""ABAVG, accuracy-based averaging (Xiao, Du, Duan and Guo, "A Novel Server-side Aggregation Strategy
for Federated Learning in Non-IID Situations", ISPDC 2021): each client's model is weighted by its
accuracy on labelled server data.

Procedure, as DynaFed's official code (``Server.abavg``, pipilurj/DynaFed) wires it for its table:
every round the server scores each participating client's model, and the aggregate is
``sum_k w_k y_k`` with ``w_k = acc_k / sum_j acc_j`` (linear normalisation, no softmax, no power).
The paper's full text was not available to check whether it also weights by data size; we follow
DynaFed's formula, which does not.

Deliberate deviations from DynaFed's code:
- Scores come from the server's validation split (carved from the training set), never the test set;
  DynaFed passes its test loader as the validation loader.
- Accuracy is counted over the whole split. DynaFed assigns ``acc[k] = correct / batch`` inside the
  batch loop, so only the last batch counts (the same 16 CIFAR test images every round).
- Client models are scored in eval mode (DynaFed's ``predict_logit`` switches to train mode; our models
  have no BatchNorm, so this changes nothing).
- If every client scores 0, the weights are uniform (DynaFed divides by zero).

Diagnostic: the weights' spread, (max - min) / mean over the round's clients, with the accuracy range.
Uniform weights mean ABAVG reduced to FedAvg.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import ConfigError, register, series_mean


@dataclass(frozen=True)
class ABAvgParams:
    """ABAVG has no hyperparameters of its own."""


@register("abavg", title="ABAVG")
class ABAvg(FedAvg):
    Params = ABAvgParams

    @classmethod
    def validate(cls, cfg) -> None:
        if cfg.dataset.val_fraction <= 0:
            raise ConfigError("dataset.val_fraction: abavg weights clients by their validation accuracy; set it > 0")

    @classmethod
    def estimate_extra_seconds(cls, cfg, work, costs) -> float:
        return cfg.rounds * work.clients_per_round * work.val_size * costs.forward_sample

    def client_accuracies(self, updates) -> torch.Tensor:
        model, flat = self.server.scratch_model("abavg-scorer")
        accuracies = []
        with torch.no_grad():
            for update in updates:
                flat.copy_(update.params)
                accuracies.append(self.server.evaluate(model, self.server.val, self.server.eval_batch_size)[0])
        return torch.tensor(accuracies, dtype=torch.float64)

    def aggregation_weights(self, updates):
        with self.server.timed("scoring"):
            accuracies = self.client_accuracies(updates)
        total = accuracies.sum()
        weights = accuracies / total if total > 0 else torch.full_like(accuracies, 1.0 / len(accuracies))
        self.server.log("abavg_weight_spread", float((weights.max() - weights.min()) / weights.mean()))
        self.server.log("abavg_accuracy_min", float(accuracies.min()))
        self.server.log("abavg_accuracy_max", float(accuracies.max()))
        return weights

    # Weights that differ by less than this share of the mean weight are FedAvg in all but name.
    ENGAGED_SPREAD = 0.1

    def mechanism(self, series):
        spread = series_mean(series, "server.abavg_weight_spread")
        if spread != spread:  # NaN: never aggregated
            return {"engaged": False, "evidence": "no round aggregated"}
        return {"engaged": bool(spread >= self.ENGAGED_SPREAD),
                "evidence": f"client weights spread (max - min) / mean = {spread:.3g} (mean over rounds; engaged "
                            f"at >= {self.ENGAGED_SPREAD:g}); client validation accuracy "
                            f"{100 * series_mean(series, 'server.abavg_accuracy_min'):.1f}%.."
                            f"{100 * series_mean(series, 'server.abavg_accuracy_max'):.1f}% (means)"}

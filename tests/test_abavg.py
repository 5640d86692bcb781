"""ABAVG: weights proportional to each client's accuracy over the whole validation split (not its last
batch, and never the test set), uniform when every client scores zero."""
from __future__ import annotations

import torch

from benchmarks.engine.api import ClientUpdate
from benchmarks.experiments.config import config_from_dict
from conftest import wired


def _updates(loop, flats):
    return [ClientUpdate(i, flat, 10, 1, 10, torch.zeros(loop.algorithm.server.num_classes), 0.0)
            for i, flat in enumerate(flats)]


def test_weights_are_validation_accuracies_normalised(tiny):
    loop = wired(config_from_dict(tiny(algorithm="abavg", dataset={"name": "synthetic", "val_fraction": 0.3,
                                                                    "proxy_fraction": 0.1})))
    algorithm = loop.algorithm
    flats = [loop.global_flat + 0.3 * torch.randn_like(loop.global_flat) for _ in range(3)]
    weights = algorithm.aggregation_weights(_updates(loop, flats))
    model, flat = algorithm.server.scratch_model("check")
    accuracies = []
    for candidate in flats:
        with torch.no_grad():
            flat.copy_(candidate)
        predictions = model.eval()(algorithm.server.val.x).argmax(1)
        accuracies.append(float((predictions == algorithm.server.val.y).double().mean()))
    expected = torch.tensor(accuracies, dtype=torch.float64) / sum(accuracies)
    torch.testing.assert_close(weights, expected)
    assert len(set(accuracies)) > 1  # distinct scores, so the weights above are not trivially uniform


def test_the_scores_count_every_validation_batch_not_only_the_last(tiny):
    loop = wired(config_from_dict(tiny(algorithm="abavg")))
    algorithm = loop.algorithm
    server = algorithm.server
    server.eval_batch_size = 3  # many batches; DynaFed's bug would keep the last one only
    flats = [loop.global_flat + 0.3 * torch.randn_like(loop.global_flat) for _ in range(2)]
    accuracies = algorithm.client_accuracies(_updates(loop, flats))
    model, flat = server.scratch_model("check")
    for candidate, accuracy in zip(flats, accuracies.tolist()):
        with torch.no_grad():
            flat.copy_(candidate)
        whole = float((model.eval()(server.val.x).argmax(1) == server.val.y).double().mean())
        assert accuracy == whole


def test_all_zero_accuracies_give_uniform_weights(tiny, monkeypatch):
    loop = wired(config_from_dict(tiny(algorithm="abavg")))
    algorithm = loop.algorithm
    monkeypatch.setattr(algorithm, "client_accuracies", lambda updates: torch.zeros(len(updates), dtype=torch.float64))
    weights = algorithm.aggregation_weights(_updates(loop, [loop.global_flat] * 4))
    assert torch.equal(weights, torch.full((4,), 0.25, dtype=torch.float64))
    assert algorithm.server.diagnostics["abavg_weight_spread"] == 0.0

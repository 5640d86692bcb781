"""FedDF: averaged-logit targets, distillation towards the ensemble, best-on-validation selection with
early stopping, and a proxy that can never be the test set."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.feddf import distillation_loss
from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.federation import build_federation
from benchmarks.engine.runner import run
from benchmarks.core.typed import ConfigError
from tests.conftest import wired


def setup_feddf(tiny, **hparams):
    """The runner's wiring for a tiny feddf config, after one round of client training and FedAvg:
    (server, algorithm, global model, global flat, updates). Clients train long enough at a high enough
    rate to disagree with their average, so there is something to distil."""
    cfg = config_from_dict(tiny(algorithm="feddf", algorithms={"feddf": hparams},
                                clients={"lr": 1e-2, "local_epochs": 2}))
    loop = wired(cfg)
    server, alg, executor = loop.server, loop.algorithm, loop.executor
    model, flat = loop.global_model, loop.global_flat
    updates = executor.train_round(1, [0, 2, 4], flat, alg)
    with torch.no_grad():
        flat.copy_(alg.aggregate(1, flat, updates))
    return server, alg, model, flat, updates


def ensemble_kl(alg, model, updates) -> float:
    x = alg.server.proxy.x
    with torch.no_grad():
        return distillation_loss(model(x), alg.ensemble_targets(updates, x), alg.params.temperature).item()


def test_targets_are_the_softmax_of_averaged_logits(tiny):
    server, alg, _, _, updates = setup_feddf(tiny, temperature=2.0)
    x = server.proxy.x
    teacher, teacher_flat = server.make_model()
    logits = []
    for u in updates:
        with torch.no_grad():
            teacher_flat.copy_(u.params)
            logits.append(teacher(x))
    expected = F.softmax(torch.stack(logits).mean(0) / 2.0, dim=1)
    assert torch.allclose(alg.ensemble_targets(updates, x), expected, atol=1e-6)
    mean_of_probs = torch.stack([F.softmax(z / 2.0, dim=1) for z in logits]).mean(0)
    assert not torch.allclose(alg.ensemble_targets(updates, x), mean_of_probs, atol=1e-4)


def test_distillation_lowers_the_kl_to_the_ensemble(tiny):
    server, alg, model, flat, updates = setup_feddf(tiny, distill_steps=30, eval_every_steps=30)
    before = ensemble_kl(alg, model, updates)
    alg.after_aggregate(1, model, flat, updates)
    assert server.diagnostics["distill_steps"] == 30
    assert ensemble_kl(alg, model, updates) < 0.5 * before
    assert "distill" in server.timings
    assert all(p.grad is None for p in model.parameters())


def scripted_validation(server, model, flat, accuracies):
    """Make validation return ``accuracies`` in turn and record the parameters it saw each time."""
    seen = []

    def evaluate(m, data, batch_size=1000):
        assert m is model and data is server.val
        seen.append(flat.detach().clone())
        return accuracies[len(seen) - 1], 0.0

    server.evaluate = evaluate
    return seen


def test_early_stopping_returns_the_best_validated_student(tiny):
    server, alg, model, flat, updates = setup_feddf(tiny, distill_steps=100, eval_every_steps=2, patience_steps=4)
    seen = scripted_validation(server, model, flat, [0.5, 0.6, 0.9, 0.7, 0.7, 0.95])
    alg.after_aggregate(1, model, flat, updates)
    # validations: initial model, then steps 2, 4 (best), 6, 8 -> 8 - 4 >= patience stops it
    assert len(seen) == 5 and server.diagnostics["distill_steps"] == 8
    assert torch.equal(flat, seen[2])
    assert not torch.equal(seen[2], seen[4]) and not torch.equal(seen[2], seen[0])
    assert server.diagnostics["distill_best_val_accuracy"] == 0.9


@pytest.mark.parametrize("allow_initial", [False, True])
def test_initial_model_wins_only_when_allowed(tiny, allow_initial):
    server, alg, model, flat, updates = setup_feddf(tiny, distill_steps=4, eval_every_steps=2,
                                                     return_best_model_on_val=allow_initial)
    seen = scripted_validation(server, model, flat, [0.8, 0.3, 0.4])
    alg.after_aggregate(1, model, flat, updates)
    assert torch.equal(flat, seen[0] if allow_initial else seen[2])


def test_zero_steps_is_fedavg_byte_for_byte(tiny, tmp_path):
    rows = {}
    for algo in ("fedavg", "feddf"):
        cfg = config_from_dict(tiny(algorithm=algo, algorithms={"feddf": {"distill_steps": 0}}))
        out = run(cfg, suite="t", results=tmp_path, progress=False)
        rows[algo] = (out / "rounds.csv").read_bytes()
    assert rows["fedavg"] == rows["feddf"]


def test_tiny_run_logs_distillation(tiny, tmp_path):
    cfg = config_from_dict(tiny(algorithm="feddf", algorithms={"feddf": {"distill_steps": 6, "eval_every_steps": 3}}))
    out = run(cfg, suite="t", results=tmp_path, progress=False)
    with open(out / "rounds.csv") as fh:
        server_rows = {(r["round"], r["metric"]): float(r["value"])
                       for r in csv.DictReader(fh) if r["split"] == "server"}
    assert server_rows[("2", "distill_steps")] == 6
    assert ("2", "distill_best_val_accuracy") in server_rows
    assert b"server_distill_seconds" in (out / "timings.csv").read_bytes()


def test_proxy_is_unlabelled_training_data_disjoint_from_the_test_set(tiny):
    cfg = config_from_dict(tiny(algorithm="feddf"))
    fed = build_federation(cfg.dataset, cfg.partition, torch.device("cpu"))
    proxy_pos = fed.proxy_positions
    assert len(proxy_pos) > 0 and fed.proxy.y is None
    assert torch.equal(fed.proxy.x, fed.train.x[torch.from_numpy(proxy_pos)])
    client_pos = np.concatenate([i.numpy() for i in fed.client_indices])
    assert not set(proxy_pos) & set(fed.val_positions) and not set(proxy_pos) & set(client_pos)
    proxy_rows = {row.numpy().tobytes() for row in fed.proxy.x}
    assert not proxy_rows & {row.numpy().tobytes() for row in fed.test.x}


def test_test_set_cannot_be_the_proxy(tiny):
    with pytest.raises(ConfigError, match="dataset.proxy_source: 'test' is not one of"):
        config_from_dict(tiny(algorithm="feddf", dataset={"proxy_source": "test"}))


@pytest.mark.parametrize("field", ["proxy_fraction", "val_fraction"])
def test_missing_server_split_is_a_one_line_config_error(tiny, field):
    with pytest.raises(ConfigError, match=f"dataset.{field}") as err:
        config_from_dict(tiny(algorithm="feddf", dataset={field: 0.0}))
    assert "\n" not in str(err.value)


def test_unused_proxy_comes_from_outside_the_subset_and_no_client_or_validation_image(tiny):
    cfg = config_from_dict(tiny(algorithm="feddf", dataset={"train_subset": 600, "proxy_source": "unused",
                                                             "proxy_fraction": 0.25}))
    fed = build_federation(cfg.dataset, cfg.partition, torch.device("cpu"))
    client_pos = np.concatenate([i.numpy() for i in fed.client_indices])
    proxy = set(fed.proxy_positions.tolist())
    assert len(proxy) == 300 and fed.proxy.y is None
    assert not proxy & set(client_pos.tolist()) and not proxy & set(fed.val_positions.tolist())
    assert torch.equal(fed.proxy.x, fed.train.x[torch.from_numpy(fed.proxy_positions)])
    assert len(client_pos) + len(fed.val_positions) == 600  # the whole subset stays with clients and validation


def test_unused_proxy_needs_a_subset_that_leaves_enough_images(tiny):
    for dataset in ({"proxy_source": "unused"}, {"proxy_source": "unused", "train_subset": 1100,
                                                 "proxy_fraction": 0.2}):
        with pytest.raises(ConfigError, match="dataset.proxy_source: 'unused' asks for") as err:
            config_from_dict(tiny(algorithm="feddf", dataset=dataset))
        assert "\n" not in str(err.value)


def test_augmented_distillation_is_deterministic_and_differs_from_plain(tiny, tmp_path):
    from algorithms.feddf import flip_and_crop
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    a, b = (flip_and_crop(x, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == x.shape
    rows = {}
    for augment in (False, True):
        cfg = config_from_dict(tiny(algorithm="feddf", rounds=2, algorithms={"feddf": {
            "distill_steps": 4, "eval_every_steps": 2, "augment": augment}}))
        runs = [run(cfg, suite="t", results=tmp_path / f"{augment}{i}", progress=False) for i in range(2)]
        assert (runs[0] / "rounds.csv").read_bytes() == (runs[1] / "rounds.csv").read_bytes()
        rows[augment] = (runs[0] / "rounds.csv").read_bytes()
    assert rows[False] != rows[True]

"""FedGen: the server's ensemble of client heads, label weights, diversity loss, the client regulariser
with a frozen generator, state round trip, and a deterministic tiny run."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from algorithms.fedavg import FedAvg
from algorithms.fedgen import diversity_loss, ensemble_teacher_loss, label_weights
from benchmarks.engine.api import Batch, ClientUpdate, LocalContext
from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.flat import unflatten
from benchmarks.engine.runner import run
from benchmarks.core.typed import ConfigError
from tests.conftest import wired


def setup_fedgen(tiny, **hparams):
    """The runner's wiring for a tiny fedgen config: (cfg, federation, server, algorithm, executor, model, flat)."""
    cfg = config_from_dict(tiny(algorithm="fedgen", algorithms={"fedgen": hparams}))
    loop = wired(cfg)
    return cfg, loop.fed, loop.server, loop.algorithm, loop.executor, loop.global_model, loop.global_flat


def fake_update(params, counts):
    return ClientUpdate(client_id=0, params=params, num_samples=1, steps=1, samples_seen=1,
                        label_counts=torch.as_tensor(counts), train_loss=0.0)


def test_client_heads_are_read_from_each_clients_own_vector(tiny):
    _, _, server, alg, _, model, flat = setup_fedgen(tiny)
    gen = torch.Generator().manual_seed(3)
    vectors = [torch.randn(flat.shape, generator=gen) for _ in range(2)]
    counts = [0] * server.num_classes
    head_w, head_b = alg.client_heads([fake_update(v, counts) for v in vectors])
    for k, v in enumerate(vectors):
        with torch.no_grad():
            flat.copy_(v)
        assert torch.equal(head_w[k], model.classifier.weight)
        assert torch.equal(head_b[k], model.classifier.bias)


def test_teacher_loss_uses_every_head_with_its_weights():
    torch.manual_seed(0)
    k, c, d, b = 3, 4, 5, 7
    w, bias = torch.randn(k, c, d), torch.randn(k, c)
    z, y = torch.randn(b, d), torch.randint(0, c, (b,))
    weights = torch.rand(k, c)
    expected = sum((F.cross_entropy(F.linear(z, w[i], bias[i]), y, reduction="none") * weights[i, y]).mean()
                   for i in range(k))
    assert torch.allclose(ensemble_teacher_loss(z, y, w, bias, weights), expected)
    one_head_twice = ensemble_teacher_loss(z, y, w[[0, 0, 2]], bias[[0, 0, 2]], weights)
    assert not torch.allclose(one_head_twice, expected)


def test_label_weights_sum_to_one_and_unsampled_labels_are_not_qualified():
    counts = torch.tensor([[5, 0, 0, 2], [1, 0, 3, 0], [0, 0, 1, 0]])
    weights, qualified = label_weights(counts)
    assert torch.allclose(weights.sum(dim=0), torch.ones(4))
    assert qualified.tolist() == [0, 2, 3]
    assert torch.allclose(weights[:, 0], torch.tensor([6.0, 2.0, 1.0]) / 9)
    assert torch.allclose(weights[:, 1], torch.full((3,), 1 / 3))


def test_diversity_loss_falls_as_outputs_spread():
    torch.manual_seed(0)
    noise, base = torch.rand(16, 8), torch.randn(16, 20)
    same = diversity_loss(noise, base[:1].expand(16, 20))
    narrow, wide = diversity_loss(noise, 0.1 * base), diversity_loss(noise, 3.0 * base)
    assert same.item() == 1.0
    assert wide < narrow < same


def test_coefficients_are_off_in_round_one_then_decay_with_a_floor(tiny):
    alg = setup_fedgen(tiny, generative_alpha=10.0, generative_beta=1e-3)[3]
    assert alg.coefficients(1) == (0.0, 0.0)
    alpha, beta = alg.coefficients(2)
    assert alpha == pytest.approx(10 * 0.98) and beta == pytest.approx(1e-3 * 0.98)
    assert alg.coefficients(1000) == (1e-4, 1e-4)


def _first_batch(fed):
    idx = fed.client_indices[0][:16]
    return Batch(fed.train.x[idx], fed.train.y[idx])


def test_local_loss_is_fedavgs_cross_entropy_without_the_regulariser(tiny):
    _, fed, server, alg, _, model, flat = setup_fedgen(tiny, generative_alpha=0.0, generative_beta=0.0)
    batch = _first_batch(fed)

    def ctx(rnd):
        return LocalContext(rnd, 0, 0, flat, unflatten(flat, list(model.parameters())),
                            torch.Generator().manual_seed(1))

    plain = FedAvg(None, server).local_loss(model, batch, ctx(5))
    assert torch.equal(alg.local_loss(model, batch, ctx(5)), plain)
    regularised = setup_fedgen(tiny)[3]
    assert torch.equal(regularised.local_loss(model, batch, ctx(1)), plain)
    assert not torch.equal(regularised.local_loss(model, batch, ctx(2)), plain)


def test_generator_is_frozen_in_eval_mode_during_client_training(tiny):
    _, _, _, alg, executor, model, flat = setup_fedgen(tiny, generator_steps=3)
    updates = executor.train_round(1, [0, 1], flat, alg)
    alg.after_aggregate(1, model, flat, updates)
    before = copy.deepcopy(alg.generator.state_dict())
    modes = []
    alg.generator.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    executor.train_round(2, [0, 1], flat, alg)
    assert modes and not any(modes)
    assert all(p.grad is None for p in alg.generator.parameters())
    after = alg.generator.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_client_loss_has_no_gradient_path_into_the_generator(tiny):
    _, fed, _, alg, _, model, flat = setup_fedgen(tiny)
    ctx = LocalContext(2, 0, 0, flat, unflatten(flat, list(model.parameters())), torch.Generator().manual_seed(1))
    loss = alg.local_loss(model, _first_batch(fed), ctx)
    grads = torch.autograd.grad(loss, list(alg.generator.parameters()) + [model.classifier.weight],
                                allow_unused=True)
    assert all(g is None for g in grads[:-1])
    assert grads[-1] is not None


def test_generator_training_changes_the_generator_and_logs_losses(tiny):
    _, _, server, alg, executor, model, flat = setup_fedgen(tiny, generator_steps=5)
    before = copy.deepcopy(alg.generator.state_dict())
    alg.after_aggregate(1, model, flat, executor.train_round(1, [0, 1, 2], flat, alg))
    assert not torch.equal(before["net.0.weight"], alg.generator.net[0].weight)
    assert set(server.diagnostics) == {"generator_teacher_loss", "generator_diversity_loss", "generator_teacher_accuracy",
                                       "generator_probe_val_accuracy", "global_head_probe_val_accuracy"}
    assert 0.0 <= server.diagnostics["generator_teacher_accuracy"] <= 1.0
    assert "generator" in server.timings and "probe_diagnostic" in server.timings
    assert not alg.generator.training


def test_server_state_round_trips(tiny):
    _, _, _, alg, executor, model, flat = setup_fedgen(tiny, generator_steps=3)
    alg.after_aggregate(1, model, flat, executor.train_round(1, [0, 1], flat, alg))
    state = alg.server_state()
    fresh = setup_fedgen(tiny, generator_steps=3)[3]
    fresh.load_server_state(state)
    labels, noise = torch.arange(4), torch.rand(4, alg.params.noise_dim)
    with torch.no_grad():
        assert torch.equal(fresh.generator(noise, labels), alg.generator(noise, labels))
    assert fresh.scheduler.get_last_lr() == alg.scheduler.get_last_lr()
    assert torch.equal(fresh.optimizer.state_dict()["state"][0]["exp_avg"],
                       alg.optimizer.state_dict()["state"][0]["exp_avg"])


def test_batch_size_one_is_rejected(tiny):
    with pytest.raises(ConfigError, match="clients.batch_size"):
        config_from_dict(tiny(algorithm="fedgen", clients={"batch_size": 1}))


def test_tiny_run_is_deterministic(tiny, tmp_path):
    cfg = config_from_dict(tiny(algorithm="fedgen", rounds=3, algorithms={"fedgen": {"generator_steps": 5}}))
    first = run(cfg, suite="t", results=tmp_path / "a", progress=False)
    second = run(cfg, suite="t", results=tmp_path / "b", progress=False)
    rows = (first / "rounds.csv").read_bytes()
    assert rows == (second / "rounds.csv").read_bytes()
    assert b"server,generator_teacher_loss" in rows
    assert b"server_generator_seconds" in (first / "timings.csv").read_bytes()


class _CentroidGenerator(torch.nn.Module):
    """Stands in for a trained generator: each label's output is a fixed vector (plus noise)."""

    def __init__(self, centres: torch.Tensor, label_blind: bool = False):
        super().__init__()
        self.centres, self.label_blind = centres, label_blind

    def forward(self, noise, labels):
        if self.label_blind:  # one shared vector whatever the label: nothing about the classes
            return self.centres.mean(0).expand(len(labels), -1) + noise[:, :1]
        return self.centres[labels] + 0.01 * noise[:, :1]


def _real_centres(alg, model, num_classes):
    real, labels = alg._real_val_features(model)
    return torch.stack([real[labels == c].mean(0) if (labels == c).any() else torch.zeros(real.shape[1])
                        for c in range(num_classes)])


def test_probe_reads_real_features_only_when_generated_classes_separate_them_as_labelled(tiny):
    _, _, server, alg, _, model, _ = setup_fedgen(tiny)
    centres = _real_centres(alg, model, server.num_classes)
    chance = 1.0 / alg.scored_classes()
    alg.generator = _CentroidGenerator(centres)
    informed, own_head = alg.probe_accuracy(1, model)
    assert informed >= 2 * chance
    alg.generator = _CentroidGenerator(centres, label_blind=True)
    assert alg.probe_accuracy(1, model)[0] < 2 * chance
    # perfectly separable generated classes, but each at another class's real centre: scored on real
    # features, the probe must fail (scored on the generated ones, it would read 100%)
    shifted = torch.roll(torch.arange(server.num_classes), 1)
    alg.generator = _CentroidGenerator(centres[shifted])
    assert alg.probe_accuracy(1, model)[0] < 2 * chance
    assert 0.0 < own_head <= 1.0


def test_probe_scores_validation_images_of_held_classes_only(tiny):
    _, _, server, alg, _, model, _ = setup_fedgen(tiny)
    held = torch.tensor([0, 2, 3])
    alg.available_labels = held
    _, labels = alg._real_val_features(model)
    assert set(labels.tolist()) == set(held.tolist()) & set(server.val.y.tolist())
    assert len(labels) == int(torch.isin(server.val.y, held).sum())
    assert alg.scored_classes() == len(set(labels.tolist()))


def test_probe_changes_no_model_generator_or_random_stream(tiny):
    _, _, server, alg, executor, model, flat = setup_fedgen(tiny, generator_steps=3)
    alg.after_aggregate(1, model, flat, executor.train_round(1, [0, 1], flat, alg))
    weights, generator = flat.clone(), copy.deepcopy(alg.generator.state_dict())
    optimizer = copy.deepcopy(alg.optimizer.state_dict())
    state = torch.random.get_rng_state()
    first = alg.probe_accuracy(2, model)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(weights, flat) and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, alg.generator.state_dict()[k]) for k, v in generator.items())
    assert all(p.grad is None for p in alg.generator.parameters()) and not alg.generator.training
    after = alg.optimizer.state_dict()["state"]
    assert all(torch.equal(v, after[k][name]) for k, st in optimizer["state"].items() for name, v in st.items())
    assert alg.probe_accuracy(2, model) == first


def test_no_validation_image_of_a_held_class_skips_the_probe_and_the_verdict(tiny):
    _, _, server, alg, executor, model, flat = setup_fedgen(tiny, generator_steps=3)
    absent = torch.tensor([c for c in range(server.num_classes) if c not in set(server.val.y.tolist())])
    alg.available_labels = absent
    assert alg.probe_accuracy(1, model) is None
    alg.after_aggregate(1, model, flat, executor.train_round(1, [0, 1], flat, alg))
    assert "generator_probe_val_accuracy" not in server.diagnostics
    assert "generator_teacher_accuracy" in server.diagnostics

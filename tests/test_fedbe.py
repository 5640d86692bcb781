"""FedBE: the Gaussian over normalised client updates, the sharpened mean of probabilities, the teacher
list (FedAvg model, samples, clients), and SWA of the distilled student."""
from __future__ import annotations

import torch

from algorithms.fedbe import gaussian_teachers, sharpen
from benchmarks.engine.api import ClientUpdate
from benchmarks.experiments.config import config_from_dict
from conftest import wired


def test_gaussian_without_variance_samples_the_mean_normalised_update_per_tensor():
    start = torch.zeros(4)
    clients = [torch.tensor([3.0, 4.0, 1.0, 0.0]), torch.tensor([3.0, 4.0, 0.0, 2.0])]
    # Tensor 1 (first two entries): both updates (3, 4), norm 5, unit (0.6, 0.8). Tensor 2: units (1, 0)
    # and (0, 1), norms 1 and 2, so mean unit (0.5, 0.5) and mean norm 1.5.
    draw, = gaussian_teachers(start, clients, [2, 2], 1, var_scale=0.0, step_size=1.0,
                              gen=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw, torch.tensor([3.0, 4.0, 0.75, 0.75]))


def test_gaussian_samples_spread_by_the_clients_disagreement():
    gen = torch.Generator().manual_seed(0)
    clients = [torch.randn(50, generator=gen) for _ in range(5)]
    draws = gaussian_teachers(torch.zeros(50), clients, [50], 200, var_scale=1.0, step_size=1.0, gen=gen)
    stacked = torch.stack(draws)
    units = torch.stack([c / c.norm() for c in clients])
    norm = torch.stack([c.norm() for c in clients]).mean()
    sigma = (units.pow(2).mean(0) - units.mean(0).pow(2)).clamp_min(1e-5).sqrt()
    # 200 draws: the sample mean sits within 4 standard errors of norm * mu, the spread near norm * sigma.
    torch.testing.assert_close(stacked.mean(0), norm * units.mean(0), atol=4 * (norm * sigma).max().item() / 200 ** 0.5,
                               rtol=0)
    torch.testing.assert_close(stacked.std(0), norm * sigma, atol=0, rtol=0.25)


def test_sharpening_squares_and_renormalises_at_half_temperature():
    probs = torch.tensor([[0.6, 0.4]])
    torch.testing.assert_close(sharpen(probs, 0.5), torch.tensor([[0.36 / 0.52, 0.16 / 0.52]]))


def test_teachers_are_fedavg_samples_and_clients_and_swa_changes_the_result(tiny):
    data = tiny(algorithm="fedbe")
    data["algorithms"] = {"fedbe": {"samples": 2, "max_distill_steps": 6, "swa_start": 2, "swa_freq": 2}}
    loop = wired(config_from_dict(data))
    algorithm = loop.algorithm
    algorithm.setup(loop.global_model, loop.global_flat)
    algorithm.before_round(1, loop.global_model, loop.global_flat)
    updates = loop.executor.train_round(1, [0, 1, 2], loop.global_flat, algorithm, {})
    with torch.no_grad():
        loop.global_flat.copy_(algorithm.aggregate(1, loop.global_flat, updates))
    teachers = algorithm.teachers(1, loop.global_flat, updates)
    assert len(teachers) == 1 + 2 + 3
    assert torch.equal(teachers[0], loop.global_flat) and torch.equal(teachers[-1], updates[-1].params)
    start = loop.global_flat.detach().clone()
    algorithm.distill_ensemble(1, loop.global_model, loop.global_flat, teachers)
    with_swa = loop.global_flat.detach().clone()
    assert not torch.equal(with_swa, start)
    loop.global_flat.data.copy_(start)
    object.__setattr__(algorithm.params, "swa_start", 100)  # no step reaches it: the last iterate is kept
    algorithm.distill_ensemble(1, loop.global_model, loop.global_flat, teachers)
    assert not torch.equal(loop.global_flat, with_swa)


def test_the_teachers_score_only_server_proxy_images(tiny, monkeypatch):
    """Targets come from unlabelled server images only: every image the ensemble scores while distilling
    is a row of the proxy set (never the validation or test split)."""
    data = tiny(algorithm="fedbe")
    data["algorithms"] = {"fedbe": {"samples": 2, "max_distill_steps": 3}}
    loop = wired(config_from_dict(data))
    algorithm = loop.algorithm
    algorithm.before_round(1, loop.global_model, loop.global_flat)
    updates = loop.executor.train_round(1, [0, 1], loop.global_flat, algorithm, {})
    scored = []
    original = algorithm.ensemble_probs
    monkeypatch.setattr(algorithm, "ensemble_probs", lambda teachers, x: scored.append(x) or original(teachers, x))
    algorithm.distill_ensemble(1, loop.global_model, loop.global_flat, algorithm.teachers(1, loop.global_flat, updates))
    proxy = algorithm.server.proxy.x.flatten(1)
    assert scored and all((proxy[None] == image.flatten()[None, None]).all(-1).any()
                          for batch in scored for image in batch)

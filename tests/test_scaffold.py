"""SCAFFOLD: the option II variate update, the server variate's 1/N scaling, the reduction to FedAvg with
one client, and that both correction forms are exact SCAFFOLD under SGD but not under Adam."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.core.typed import ConfigError
from benchmarks.engine.api import LocalResult
from benchmarks.experiments.config import config_from_dict
from conftest import wired

SGD = {"participation": 1.0, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "persistent_state": False}


def _loop(tiny, correction="after_step", clients=None, **extra):
    data = tiny(algorithm="scaffold", clients={**SGD, **(clients or {})}, **extra)
    data["algorithms"] = {"scaffold": {"correction": correction}}
    loop = wired(config_from_dict(data))
    loop.algorithm.setup(loop.global_model, loop.global_flat)
    return loop


def _round(loop, rnd, clients):
    updates = loop.executor.train_round(rnd, clients, loop.global_flat, loop.algorithm,
                                        loop.algorithm.client_config(rnd))
    with torch.no_grad():
        loop.global_flat.copy_(loop.algorithm.aggregate(rnd, loop.global_flat, updates))
    return updates


def test_option_two_formula_on_given_numbers(tiny):
    loop = _loop(tiny)
    lr = loop.algorithm.server.clients.lr
    start, params = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.5])
    old, server = torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.3])
    result = LocalResult(1, 0, start, params, 4, 10, {"control": server}, {"control": old.clone()})
    payload = loop.algorithm.finish_client(result)
    expected = old - server + (start - params) / (4 * lr)
    torch.testing.assert_close(result.state["control"], expected)
    torch.testing.assert_close(payload["delta_control"], expected - old)


def test_server_variate_moves_by_the_sum_over_participants_divided_by_all_clients(tiny):
    loop = _loop(tiny, clients={"participation": 0.5})
    updates = _round(loop, 1, [0, 2, 4])
    total = torch.stack([u.payload["delta_control"] for u in updates]).sum(0)
    torch.testing.assert_close(loop.algorithm.control, total / 6)


@pytest.mark.parametrize("correction", ["after_step", "gradient"])
def test_one_full_batch_sgd_step_makes_the_client_variate_its_gradient_at_the_start(tiny, correction):
    """With SGD, y = x - lr (g(x) + c - c_i), so option II gives c_i+ = g(x) whatever c and c_i were:
    the client variate becomes the client's true gradient, in both correction forms."""
    loop = _loop(tiny, correction, clients={"local_steps": 1, "batch_size": 10_000})
    algorithm = loop.algorithm
    algorithm.control = torch.randn_like(loop.global_flat) * 0.1
    loop.executor.algorithm_states[0] = {"control": torch.randn_like(loop.global_flat) * 0.1}
    start = loop.global_flat.detach().clone()
    _round(loop, 1, [0])
    model, flat = algorithm.server.scratch_model("test")
    with torch.no_grad():
        flat.copy_(start)
    idx = loop.executor.client_indices[0]
    x, y = loop.executor.train.x[idx], loop.executor.train.y[idx]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    true_gradient = torch.cat([g.reshape(-1) for g in grads])
    torch.testing.assert_close(loop.executor.algorithm_states[0]["control"], true_gradient, atol=1e-4, rtol=1e-3)


def test_one_client_with_sgd_reduces_to_fedavg_after_the_first_round(tiny):
    """N = 1 and full participation: c = c_1 after every round, so the correction is zero and SCAFFOLD's
    trajectory is FedAvg's."""
    def trajectory(algorithm):
        data = tiny(algorithm=algorithm, clients=SGD, partition={"scheme": "iid", "clients": 1})
        loop = wired(config_from_dict(data))
        loop.algorithm.setup(loop.global_model, loop.global_flat)
        for rnd in (1, 2, 3):
            _round(loop, rnd, [0])
        return loop.global_flat.detach().clone()

    torch.testing.assert_close(trajectory("scaffold"), trajectory("fedavg"), atol=1e-5, rtol=0)


def test_correction_forms_agree_under_sgd_and_differ_under_adam(tiny):
    def after_two_rounds(correction, optimizer):
        loop = _loop(tiny, correction, clients={"optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 1e-3})
        for rnd in (1, 2):
            _round(loop, rnd, [0, 1, 2, 3, 4, 5])
        return loop.global_flat.detach().clone()

    torch.testing.assert_close(after_two_rounds("after_step", "sgd"), after_two_rounds("gradient", "sgd"),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(after_two_rounds("after_step", "adam"), after_two_rounds("gradient", "adam"), atol=1e-5)


def test_the_correction_engages_from_round_two(tiny):
    loop = _loop(tiny, clients={"participation": 0.5})
    first = _round(loop, 1, [0, 1, 2])
    assert all(float(u.payload["correction_share"]) == 0.0 for u in first)
    second = _round(loop, 2, [0, 3, 4])
    assert all(float(u.payload["correction_share"]) > 0.0 for u in second)


def test_gradient_form_with_sgd_momentum_is_refused(tiny):
    data = tiny(algorithm="scaffold", clients={**SGD, "momentum": 0.9})
    data["algorithms"] = {"scaffold": {"correction": "gradient"}}
    with pytest.raises(ConfigError, match="algorithms.scaffold.correction"):
        wired(config_from_dict(data))

"""FedMix: the shared means, the first-order expansion matching real mixup for small lambda, the Taylor
term reaching the weights (not detached), NaiveMix, and that sharing happens before round 1 and on resume."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from algorithms.fedmix import mix_terms
from benchmarks.experiments.config import config_from_dict
from conftest import wired


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 2, 2, generator=gen)
    y = torch.randint(3, (5,), generator=gen)
    x_bar = torch.randn(3, 2, 2, generator=gen)
    y_bar = torch.softmax(torch.randn(3, generator=gen), 0)
    return x, y, x_bar, y_bar


def test_first_order_expansion_tracks_true_mixup_to_second_order_in_lambda():
    model, (x, y, x_bar, y_bar) = _model(), _batch()

    def true_mixup(lam):
        out = model((1 - lam) * x + lam * x_bar)
        return ((1 - lam) * F.cross_entropy(out, y, reduction="none")
                + lam * F.cross_entropy(out, y_bar.expand(len(y), -1), reduction="none")).mean()

    errors = []
    for lam in (0.02, 0.01):
        approx, _ = mix_terms(model, x, y, x_bar, y_bar, lam, "fedmix")
        errors.append(abs(approx.item() - true_mixup(lam).item()))
    assert errors[1] < errors[0] / 3  # halving lambda cuts the error about 4x: the first order is exact


def test_the_taylor_term_sends_gradient_to_the_weights():
    model, (x, y, x_bar, y_bar) = _model(), _batch()
    lam = 0.1
    loss, _ = mix_terms(model, x, y, x_bar, y_bar, lam, "fedmix")
    with_term = torch.autograd.grad(loss, list(model.parameters()))
    z = (1 - lam) * x
    out = model(z)
    without = ((1 - lam) * F.cross_entropy(out, y) + lam * F.cross_entropy(out, y_bar.expand(len(y), -1)))
    no_term = torch.autograd.grad(without, list(model.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_term, no_term))


def test_naivemix_is_cross_entropy_of_the_mixed_input_against_mixed_labels():
    model, (x, y, x_bar, y_bar) = _model(), _batch()
    lam = 0.2
    loss, _ = mix_terms(model, x, y, x_bar, y_bar, lam, "naivemix")
    mixed_labels = (1 - lam) * F.one_hot(y, 3).float() + lam * y_bar
    torch.testing.assert_close(loss, F.cross_entropy(model((1 - lam) * x + lam * x_bar), mixed_labels))


def test_every_client_shares_its_mean_image_and_label_histogram(tiny):
    loop = wired(config_from_dict(tiny(algorithm="fedmix")))
    algorithm, executor = loop.algorithm, loop.executor
    assert algorithm.mean_x.shape[0] == len(executor.client_indices)
    for cid, idx in enumerate(executor.client_indices):
        torch.testing.assert_close(algorithm.mean_x[cid], executor.train.x[idx].mean(0))
        histogram = torch.bincount(executor.train.y[idx], minlength=algorithm.server.num_classes).float() / len(idx)
        torch.testing.assert_close(algorithm.mean_y[cid], histogram)


def test_mean_batches_of_m_average_whole_chunks(tiny):
    data = tiny(algorithm="fedmix")
    data["algorithms"] = {"fedmix": {"mean_batch": 4}}
    loop = wired(config_from_dict(data))
    sizes = [len(idx) // 4 for idx in loop.executor.client_indices]
    assert loop.algorithm.mean_x.shape[0] == sum(sizes)
    torch.testing.assert_close(loop.algorithm.mean_y.sum(1), torch.ones(sum(sizes)))

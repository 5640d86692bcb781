"""DynaFed: trajectory recording, target sampling, the unrolled matching gradient, synthesis quality,
fine-tuning on synthetic data only, state, artifacts and bit-reproducible runs."""
from __future__ import annotations

import collections
import json

import pytest
import torch
import torch.nn.functional as F

from algorithms import dsa
from algorithms.dynafed import ARTIFACT_CURVE, ARTIFACT_GRID, ARTIFACT_TENSORS, DynaFed, DynaFedParams, tile
from algorithms.trajectory_matching import (FunctionalNet, SyntheticSet, TrajectoryMatcher, kd_loss,
                                            sample_expert_segment, unrolled_matching_loss)
from benchmarks.engine.api import ServerContext
from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.flat import bind_flat
from benchmarks.models import ConvNet
from benchmarks.engine.runner import run
from benchmarks.core.typed import ConfigError

SHAPE = (1, 8, 8)
CLASSES = 4


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def quadrant_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A separable problem: the class is the bright quadrant of a noisy 8x8 image."""
    y = torch.arange(n) % CLASSES
    x = 0.5 * torch.randn(n, *SHAPE, generator=gen)
    for c in range(CLASSES):
        r, col = divmod(c, 2)
        x[y == c, :, 4 * r:4 * r + 4, 4 * col:4 * col + 4] += 2.0
    return x, y


def tiny_model(seed: int = 0, dtype=torch.float32) -> tuple[ConvNet, torch.Tensor]:
    torch.manual_seed(seed)
    model = ConvNet(SHAPE, CLASSES, width=8, depth=2).to(dtype)
    return model, bind_flat(model)


def real_trajectory(epochs: int = 6) -> tuple[ConvNet, torch.Tensor]:
    """Snapshots of a tiny model trained slowly enough (SGD 0.01) that each epoch still moves it."""
    gen = seeded(0)
    x, y = quadrant_data(400, gen)
    model, flat = tiny_model()
    snapshots = [flat.clone()]
    params = list(model.parameters())
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(50):
            grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= 0.01 * g
        snapshots.append(flat.detach().clone())
    return model, torch.stack(snapshots)


# ---- target sampling -----------------------------------------------------------------------------

def test_segment_start_range_and_average_sizes():
    gen = seeded(1)
    starts, sizes = collections.Counter(), collections.Counter()
    for _ in range(2000):
        s, picks = sample_expert_segment(25, 3, 0, 50, 2, 10, gen)
        starts[s] += 1
        sizes[len(picks)] += 1
        assert ((picks >= s + 1) & (picks <= s + 3)).all()
    assert set(starts) == set(range(22))  # min(50, 25 - 1 - 3) = 21, inclusive
    assert set(sizes) == {2, 3}           # {least_ave_num .. min(max_ave_num, expert_epochs)}


def test_segment_draws_with_replacement_and_respects_bounds():
    gen = seeded(2)
    draws = [sample_expert_segment(40, 4, 5, 9, 3, 3, gen) for _ in range(500)]
    assert {s for s, _ in draws} == set(range(5, 10))
    assert all(len(p) == 3 for _, p in draws)
    assert any(len(set(p.tolist())) < len(p) for _, p in draws)  # repeats happen: with replacement
    assert {i for s, p in draws for i in (p - s).tolist()} == {1, 2, 3, 4}
    with pytest.raises(ValueError):
        sample_expert_segment(4, 3, 1, 50, 2, 10, gen)


def test_target_is_mean_of_sampled_snapshots():
    traj = torch.arange(10, dtype=torch.float64).view(-1, 1).repeat(1, 3)
    hp = DynaFedParams(expert_epochs=3)
    matcher = TrajectoryMatcher(tiny_model()[0], traj, SyntheticSet.initial(CLASSES, 1, SHAPE, 0.04, 0.0, seeded(),
                                                                           torch.device("cpu")), hp, seeded(7))
    start, target = matcher.target()
    s, picks = sample_expert_segment(10, 3, 0, 50, 2, 10, seeded(7))
    assert torch.equal(start, traj[s])
    assert torch.allclose(target, torch.full((3,), picks.double().mean().item(), dtype=torch.float64))


# ---- synthetic set and matching --------------------------------------------------------------------

def test_initial_labels_are_uniform_and_images_standard_normal():
    syn = SyntheticSet.initial(10, 15, (3, 32, 32), 0.04, 0.0, seeded(), torch.device("cpu"))
    assert syn.images.shape == (150, 3, 32, 32)
    assert abs(syn.images.mean().item()) < 0.02 and abs(syn.images.std().item() - 1) < 0.02
    assert torch.equal(syn.label_logits, torch.zeros(150, 10))
    assert torch.allclose(F.softmax(syn.label_logits, 1), torch.full((150, 10), 0.1))
    assert syn.syn_lr.item() == pytest.approx(0.04)
    hot = SyntheticSet.initial(3, 2, SHAPE, 0.04, 2.0, seeded(), torch.device("cpu"))
    assert hot.label_logits.argmax(1).tolist() == [0, 0, 1, 1, 2, 2] and hot.label_logits.max() == 2.0


def test_kd_loss_is_soft_cross_entropy_over_classes():
    logits, labels = torch.randn(5, 4, generator=seeded()), torch.randn(5, 4, generator=seeded(1))
    soft_ce = -(F.softmax(labels, 1) * F.log_softmax(logits, 1)).sum(1).mean()
    assert kd_loss(logits, labels).item() == pytest.approx(soft_ce.item() / 4)


def test_one_step_unrolled_gradient_matches_finite_differences():
    model, _ = tiny_model(dtype=torch.float64)
    net = FunctionalNet(model)
    start = torch.randn(sum(net.numels), generator=seeded(3), dtype=torch.float64) * 0.3
    target = start + 0.05 * torch.randn(len(start), generator=seeded(4), dtype=torch.float64)
    base = SyntheticSet.initial(CLASSES, 1, SHAPE, 0.5, 1.0, seeded(5), torch.device("cpu"), torch.float64)

    def loss_of(images, logits, lr, aug_seed):
        syn = SyntheticSet(images, logits, lr)
        return unrolled_matching_loss(net, syn, start, target, 1, seeded(aug_seed))

    eps = 1e-6
    for aug_seed in (0, 1, 2, 3, 5, 7):  # seeds whose DSA draw is each of the six families
        inputs = tuple(t.detach().clone().requires_grad_(True)
                       for t in (base.images, base.label_logits, base.syn_lr))
        grads = torch.autograd.grad(loss_of(*inputs, aug_seed), inputs)
        for i, (tensor, grad) in enumerate(zip(inputs, grads)):
            direction = torch.randn(tensor.shape, generator=seeded(10 + i), dtype=torch.float64)
            shifted = [list(t.detach() for t in inputs) for _ in range(2)]
            shifted[0][i] = tensor.detach() + eps * direction
            shifted[1][i] = tensor.detach() - eps * direction
            numeric = (loss_of(*shifted[0], aug_seed) - loss_of(*shifted[1], aug_seed)) / (2 * eps)
            analytic = (grad * direction).sum()
            assert numeric.item() == pytest.approx(analytic.item(), rel=1e-5, abs=1e-9)


def test_matching_loss_falls_and_the_set_teaches_a_fresh_model():
    model, traj = real_trajectory()
    hp = DynaFedParams(trajectory_length=len(traj), ipc=1, syn_steps=5, expert_epochs=2, iterations=40,
                       lr_label=0.1)
    gen = seeded(1)
    syn = SyntheticSet.initial(CLASSES, hp.ipc, SHAPE, hp.syn_lr_init, hp.label_init, gen, torch.device("cpu"))
    matcher = TrajectoryMatcher(model, traj, syn, hp, gen)
    losses = [matcher.step() for _ in range(hp.iterations)]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first

    x_test, y_test = quadrant_data(400, seeded(9))
    fresh, _ = tiny_model(seed=123)
    opt = torch.optim.SGD(fresh.parameters(), lr=syn.syn_lr.item())
    for _ in range(200):
        loss = kd_loss(fresh(dsa.augment(syn.images.detach(), gen)), syn.label_logits.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (fresh(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.6  # chance is 0.25


# ---- the algorithm's hooks ---------------------------------------------------------------------------

class Forbidden:
    """Stands in for real data: any use fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"DynaFed touched real data ({name})")

    def __len__(self):
        raise AssertionError("DynaFed touched real data (len)")

    def __iter__(self):
        raise AssertionError("DynaFed touched real data (iter)")


def server_without_data(seed: int = 0) -> ServerContext:
    return ServerContext(aggregation="uniform", clients=None, eval_batch_size=1000, rounds=1, num_classes=CLASSES, input_shape=SHAPE, device=torch.device("cpu"),
                         val=Forbidden(), proxy=Forbidden(), client_class_counts=Forbidden(),
                         build_model=lambda: ConvNet(SHAPE, CLASSES, width=8, depth=2), seed=seed)


# quality_models = 0: these tests check that synthesis itself never touches real data; the quality
# diagnostic, which trains fresh models and scores them on the validation split, has its own test.
SMALL = dict(trajectory_length=3, ipc=2, syn_steps=2, expert_epochs=2, iterations=3, distill_epochs=2,
             finetune_batch=3, quality_models=0)


def test_records_until_length_then_synthesises_once_and_stops_recording():
    algo = DynaFed(DynaFedParams(**SMALL), server_without_data())
    model, flat = algo.server.make_model()
    algo.setup(model, flat)
    for rnd in (1, 2):
        algo.before_round(rnd, model, flat)
        assert not algo.synthesised
        with torch.no_grad():
            flat.add_(0.1)
        algo.after_aggregate(rnd, model, flat, [Forbidden()])
    assert len(algo.trajectory) == 3 and torch.equal(algo.trajectory[2], flat)
    algo.before_round(3, model, flat)
    assert algo.synthesised and "synthesis" in algo.server.timings
    assert set(algo.server.diagnostics) == {"synthesis_matching_loss", "synthesis_lr", "synthesis_loss_start",
                                            "synthesis_loss_end", "label_top_probability", "label_distinct_argmax"}
    images = algo.synthetic.images.detach().clone()
    algo.after_aggregate(3, model, flat, [Forbidden()])
    algo.before_round(4, model, flat)
    assert len(algo.trajectory) == 3
    assert torch.equal(algo.synthetic.images, images)  # synthesised once


def test_quality_diagnostic_scores_the_trajectorys_last_model_beside_the_set():
    """With the quality diagnostic on, the synthesis round also logs the validation accuracy of the model
    the trajectory ends at (what the set can distil), scored on the validation split."""
    from benchmarks.engine.api import TensorData, evaluate
    gen = torch.Generator().manual_seed(3)
    val = TensorData(torch.randn(40, *SHAPE, generator=gen), torch.randint(0, CLASSES, (40,), generator=gen))
    server = ServerContext(aggregation="uniform", clients=None, eval_batch_size=16, rounds=1, num_classes=CLASSES,
                           input_shape=SHAPE, device=torch.device("cpu"), val=val, proxy=Forbidden(),
                           client_class_counts=Forbidden(), seed=0,
                           build_model=lambda: ConvNet(SHAPE, CLASSES, width=8, depth=2))
    algo = DynaFed(DynaFedParams(**{**SMALL, "quality_models": 1, "quality_epochs": 2}), server)
    model, flat = server.make_model()
    algo.setup(model, flat)
    for rnd in (1, 2):
        algo.before_round(rnd, model, flat)
        with torch.no_grad():
            flat.add_(torch.randn(flat.shape, generator=gen) * 0.3)
        algo.after_aggregate(rnd, model, flat, [Forbidden()])
    expected = evaluate(model, val, 1000)[0]
    algo.before_round(3, model, flat)
    assert algo.server.diagnostics["trajectory_val_accuracy"] == expected
    assert torch.equal(flat, algo.trajectory[-1]), "scoring the last model changed it"
    judged = algo.mechanism({f"server.{k}": {3: v} for k, v in algo.server.diagnostics.items()})
    assert f"the trajectory's last model {100 * expected:.1f}%" in judged["evidence"]


def test_synthesis_reports_its_progress_and_clears_it():
    algo = DynaFed(DynaFedParams(**SMALL), server_without_data())
    shown = []
    algo.server.show_status = shown.append
    model, flat = algo.server.make_model()
    algo.setup(model, flat)
    for rnd in (1, 2):
        algo.after_aggregate(rnd, model, flat, [Forbidden()])
    algo.before_round(3, model, flat)
    assert [text.split(",")[0] for text in shown[:-1]] == ["synthesis 1/3", "synthesis 2/3", "synthesis 3/3"]
    assert shown[2].endswith(f"matching loss {algo.matching_losses[2]:.3f}") and shown[-1] == ""


def test_finetune_uses_only_the_synthetic_set():
    """Every real-data field of the server is poisoned: fine-tuning must still run and move the model."""
    algo = DynaFed(DynaFedParams(**SMALL), server_without_data())
    state = SyntheticSet.initial(CLASSES, 2, SHAPE, 0.04, 1.0, seeded(), torch.device("cpu")).state()
    algo.load_server_state({**state, "trajectory": [], "synthesised": True})
    model, flat = algo.server.make_model()
    before = flat.clone()
    algo.after_aggregate(5, model, flat, [Forbidden()])
    assert (flat - before).abs().sum() > 0
    assert algo.server.diagnostics["finetune_steps"] == 2 * 3  # 2 passes x ceil(8 / 3) batches
    assert "finetune" in algo.server.timings


def test_aggregation_is_uniform_even_when_config_says_samples():
    algo = DynaFed(DynaFedParams(**SMALL), server_without_data())
    updates = [type("U", (), {"num_samples": n})() for n in (1, 9)]
    assert algo.aggregation_weights(updates).tolist() == [0.5, 0.5]


def test_server_state_round_trip():
    algo = DynaFed(DynaFedParams(**SMALL), server_without_data())
    model, flat = algo.server.make_model()
    algo.setup(model, flat)
    assert algo.server_state()["synthesised"] is False
    for rnd in (1, 2):
        with torch.no_grad():
            flat.mul_(0.9)
        algo.after_aggregate(rnd, model, flat, [])
    algo.before_round(3, model, flat)
    other = DynaFed(DynaFedParams(**SMALL), server_without_data())
    other.load_server_state(algo.server_state())
    assert other.synthesised and len(other.trajectory) == 3
    assert torch.isfinite(algo.synthetic.images).all()
    for key, value in algo.synthetic.state().items():
        assert torch.equal(other.synthetic.state()[key], value)


@pytest.mark.parametrize("hparams, field", [
    ({"trajectory_length": 3, "expert_epochs": 3}, "trajectory_length"),
    ({"least_ave_num": 4}, "least_ave_num"),
    ({"min_start_epoch": 9, "max_start_epoch": 2, "trajectory_length": 14}, "min_start_epoch"),
    ({"trajectory_length": 40}, "trajectory_length"),
])
def test_validate_rejects_impossible_settings(tiny, hparams, field):
    with pytest.raises(ConfigError, match=f"algorithms.dynafed.{field}"):
        config_from_dict(tiny(algorithm="dynafed", rounds=30, algorithms={"dynafed": hparams}))


# ---- whole runs ----------------------------------------------------------------------------------

def dynafed_run(tiny, results):
    cfg = config_from_dict(tiny(algorithm="dynafed", rounds=4, aggregation="samples",
                                algorithms={"dynafed": {**SMALL, "iterations": 5, "finetune_batch": 256}}))
    return run(cfg, suite="t", results=results, progress=False)


def test_run_is_bit_reproducible_and_saves_artifacts(tiny, tmp_path):
    first, second = dynafed_run(tiny, tmp_path / "a"), dynafed_run(tiny, tmp_path / "b")
    assert (first / "rounds.csv").read_bytes() == (second / "rounds.csv").read_bytes()
    rows = (first / "rounds.csv").read_text().splitlines()
    assert "3,server,synthesis_lr" in "\n".join(rows) and "4,server,finetune_steps,2.0" in rows
    timings = (first / "timings.csv").read_text()
    assert "3,time,server_synthesis_seconds" in timings and "4,time,server_finetune_seconds" in timings
    summary = json.loads((first / "summary.json").read_text())
    assert summary["artifacts"] == [ARTIFACT_TENSORS, ARTIFACT_GRID, ARTIFACT_CURVE]
    curve = (first / ARTIFACT_CURVE).read_text().splitlines()
    assert curve[0] == "iteration,matching_loss" and len(curve) == 1 + 5
    mechanism = summary["mechanism"]
    assert mechanism["engaged"] is None and "quality not measured" in mechanism["evidence"]
    assert {"server.synthesis_loss_start", "server.label_distinct_argmax", "train.drift"} <= set(mechanism["series"])
    saved = torch.load(first / ARTIFACT_TENSORS, weights_only=True)
    assert saved["images"].shape == (10 * 2, 1, 16, 16) and saved["label_logits"].shape == (20, 10)
    assert saved["syn_lr"].shape == ()
    assert (first / ARTIFACT_GRID).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_rows_are_class_slots_and_columns_their_images():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 2, 2)
    picture = tile(images, rows=3, cols=2)
    assert picture.shape == (6, 4, 3)
    for slot in range(3):
        for j in range(2):
            assert (picture[2 * slot:2 * slot + 2, 2 * j:2 * j + 2] == slot * 2 + j).all()


def test_perf_measure_reports_time_and_memory():
    from benchmarks.perf.dynafed import measure
    row = measure(width=4, num_classes=2, ipc=1, iterations=1, syn_steps=1, device=torch.device("cpu"))
    assert row["images"] == 2 and row["seconds_per_iteration"] > 0 and row["peak_mb"] >= 0


def test_synthetic_set_diagnostics():
    """Label sharpness reads the soft labels; loss start/end average a tenth each; the quality check trains
    fresh models on the synthetic set and scores them on the validation split only."""
    from algorithms import synthetic_quality
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    top, distinct = synthetic_quality.label_sharpness(logits)
    assert distinct == 2 and top == pytest.approx(float(torch.softmax(logits, 1).max(1).values.mean()))
    assert synthetic_quality.loss_start_end([float(i) for i in range(20)]) == (0.5, 18.5)
    assert synthetic_quality.loss_start_end([3.0]) == (3.0, 3.0)

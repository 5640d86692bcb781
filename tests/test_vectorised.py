"""The vectorised executor trains every client exactly as the sequential one does (within float
tolerance), masks clients out of steps they have no batch for, and falls back, once and loudly, when an
objective cannot run under vmap."""
from __future__ import annotations

import copy
import csv
import json
import functools

import pytest
import torch
import torch.nn.functional as F

from algorithms.fedavg import FedAvg
from algorithms.fedprox import FedProx, FedProxParams
from benchmarks.engine.api import TensorData
from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.executors import make_executor
from benchmarks.engine.executors.sequential import SequentialExecutor
from benchmarks.engine.flat import FlatOptimizer, bind_flat
from benchmarks.models import build_model
from benchmarks.engine.runner import run
from benchmarks.core.typed import ConfigError
from benchmarks.engine.executors.vectorised import StackedOptimizer, VectorisedExecutor, plan_round

SHAPE, CLASSES = (1, 8, 8), 3
# Unequal clients at batch size 8: none, one short batch, several with a short last batch.
CLIENT_SIZES = (0, 5, 16, 23, 40, 6)


class _Server:
    def __init__(self, config):
        self.aggregation, self.clients = config.aggregation, config.clients


class _ItemLoss(FedAvg):
    """An objective that reads a value back to Python, which vmap cannot do."""

    def local_loss(self, model, batch, ctx):
        loss = F.cross_entropy(model(batch.x), batch.y)
        return loss * (1.0 if loss.item() < 1e9 else 0.0)


def _data():
    gen = torch.Generator().manual_seed(0)
    n = sum(CLIENT_SIZES)
    x, y = torch.randn(n, *SHAPE, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)
    bounds = torch.tensor((0,) + CLIENT_SIZES).cumsum(0).tolist()
    order = torch.randperm(n, generator=gen)
    return TensorData(x, y), [order[a:b] for a, b in zip(bounds, bounds[1:])]


def _executors(model_name, clients):
    train, indices = _data()
    cfg = config_from_dict({"clients": {"batch_size": 8, "local_epochs": 2, **clients},
                            "partition": {"clients": len(CLIENT_SIZES)}})
    torch.manual_seed(1)
    model = build_model(model_name, SHAPE, CLASSES, 4, 2)
    global_flat = bind_flat(copy.deepcopy(model)).detach().clone()
    seq = SequentialExecutor(copy.deepcopy(model), train, indices, cfg.clients, CLASSES, seed=3)
    vec = VectorisedExecutor(copy.deepcopy(model), train, indices, cfg.clients, CLASSES, seed=3)
    return cfg, global_flat, seq, vec


def _assert_same_updates(a, b):
    for u, v in zip(a, b, strict=True):
        assert (u.client_id, u.num_samples, u.steps, u.samples_seen) == (v.client_id, v.num_samples, v.steps,
                                                                         v.samples_seen)
        assert torch.equal(u.label_counts, v.label_counts)
        assert u.train_loss == pytest.approx(v.train_loss, abs=1e-5)
        torch.testing.assert_close(u.params, v.params, atol=1e-5, rtol=0)


def _assert_same_states(seq, vec):
    assert sorted(seq.optimizer_states) == sorted(vec.optimizer_states)
    for cid, state in seq.optimizer_states.items():
        other = vec.optimizer_states[cid]
        assert state.keys() == other.keys() and state["step"] == other["step"]
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, other[key], atol=1e-5, rtol=1e-4)
            elif key != "step":
                assert value is None and other[key] is None


# The ConvNet's conv biases feed a per-channel norm, so their true gradient is zero and Adam (without
# weight decay) turns rounding noise into full-size steps on them: those cases use the FedAvg CNN.
CASES = [("cnn", {"optimizer": "adam"}), ("convnet", {"optimizer": "adam", "weight_decay": 0.01}),
         ("convnet", {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}), ("cnn", {"optimizer": "sgd", "lr": 0.05})]


@pytest.mark.parametrize("model_name,clients", CASES)
@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox"])
def test_same_parameters_and_state_as_sequential_over_two_rounds(algorithm, model_name, clients):
    cfg, global_flat, seq, vec = _executors(model_name, clients)
    algo = FedAvg(None, _Server(cfg)) if algorithm == "fedavg" else FedProx(FedProxParams(mu=0.5), _Server(cfg))
    # Clients 1, 2, 4 take part twice, so their persistent optimizer state carries over.
    for rnd, clients_of_round in ((1, [0, 1, 2, 4]), (2, [1, 2, 3, 4, 5])):
        expected = seq.train_round(rnd, clients_of_round, global_flat, algo)
        got = vec.train_round(rnd, clients_of_round, global_flat, algo)
        assert len({u.steps for u in expected}) > 2, "the clients must have unequal numbers of batches"
        _assert_same_updates(expected, got)
        global_flat = torch.stack([u.params for u in expected]).mean(0)
    _assert_same_states(seq, vec)
    assert vec.fallback is None


def test_states_assigned_on_resume_are_the_ones_trained_on():
    cfg, global_flat, seq, vec = _executors("cnn", {"optimizer": "adam"})
    algo = FedAvg(None, _Server(cfg))
    seq.train_round(1, [1, 2, 4], global_flat, algo)
    vec.client_states = copy.deepcopy(seq.client_states)  # as the runner does from a checkpoint
    _assert_same_updates(seq.train_round(2, [2, 4, 5], global_flat, algo),
                         vec.train_round(2, [2, 4, 5], global_flat, algo))
    _assert_same_states(seq, vec)


def test_without_persistent_state_nothing_is_stored():
    cfg, global_flat, seq, vec = _executors("cnn", {"optimizer": "adam", "persistent_state": False})
    algo = FedAvg(None, _Server(cfg))
    for rnd in (1, 2):
        _assert_same_updates(seq.train_round(rnd, [1, 3], global_flat, algo),
                             vec.train_round(rnd, [1, 3], global_flat, algo))
    assert vec.client_states == {"optimizer": {}, "algorithm": {}}


def test_plan_masks_clients_without_a_batch_of_the_steps_length():
    batches = [[torch.arange(4), torch.arange(4), torch.arange(2)], [torch.arange(4), torch.arange(1)], []]
    plan = plan_round(batches, [0, 7, 0], StackedOptimizer(FlatOptimizer("adam", 0.1)), torch.device("cpu"))
    assert [(g.step, g.length, g.rows.tolist()) for g in plan] == [(0, 4, [0, 1]), (1, 4, [0]), (1, 1, [1]),
                                                                    (2, 2, [0])]
    assert [len(g.samples) for g in plan] == [8, 4, 1, 2]
    # Row 1 resumes a persistent state at step 7, so its second step is its 9th: Adam's bias corrections.
    assert plan[2].scalars[0].tolist() == pytest.approx([(1 - 0.999 ** 9) ** 0.5, -0.1 / (1 - 0.9 ** 9)])


def test_client_out_of_batches_is_masked_from_later_steps():
    """Client 1 (5 samples: one batch per epoch) takes 2 steps while client 4 takes 10: the 8 steps it
    sits out must leave its parameters and Adam state as if it had trained alone."""
    cfg, global_flat, seq, together = _executors("cnn", {"optimizer": "adam"})
    algo = FedAvg(None, _Server(cfg))
    alone = VectorisedExecutor(copy.deepcopy(seq.model), seq.train, seq.client_indices, cfg.clients, CLASSES, 3)
    short, _ = together.train_round(1, [1, 4], global_flat, algo)
    solo = alone.train_round(1, [1], global_flat, algo)[0]
    assert (short.steps, together.optimizer_states[4]["step"]) == (2, 10)
    torch.testing.assert_close(short.params, solo.params, atol=1e-7, rtol=0)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(together.optimizer_states[1][key], alone.optimizer_states[1][key], atol=1e-7, rtol=0)
    assert together.optimizer_states[1]["step"] == alone.optimizer_states[1]["step"] == 2


def test_unvmappable_objective_falls_back_once_and_matches_sequential(capsys):
    cfg, global_flat, seq, vec = _executors("cnn", {"optimizer": "adam"})
    algo = _ItemLoss(None, _Server(cfg))
    for rnd in (1, 2):
        _assert_same_updates(seq.train_round(rnd, [1, 2, 4], global_flat, algo),
                             vec.train_round(rnd, [1, 2, 4], global_flat, algo))
    _assert_same_states(seq, vec)
    err = capsys.readouterr().err
    assert err.count("vectorised executor:") == 1
    assert "_ItemLoss.local_loss" in err and "from round 1 on" in err


def test_auto_is_sequential_on_cpu_and_vectorised_on_cuda():
    train, indices = _data()
    model = build_model("cnn", SHAPE, CLASSES, 4, 2)
    kinds = {}
    for device, executor in (("cpu", "auto"), ("cuda", "auto"), ("cpu", "vectorised"), ("cuda", "sequential")):
        cfg = config_from_dict({"device": device, "executor": executor, "partition": {"clients": 6}})
        kinds[device, executor] = make_executor(cfg.executor, cfg.device, cfg.clients, cfg.compile, cfg.seed, copy.deepcopy(model),
                                                  train, indices, CLASSES).name
    assert kinds == {("cpu", "auto"): "sequential", ("cuda", "auto"): "vectorised",
                     ("cpu", "vectorised"): "vectorised", ("cuda", "sequential"): "sequential"}


def test_compile_applies_to_the_sequential_executor_only():
    for executor, device in (("vectorised", "cpu"), ("auto", "cuda")):
        with pytest.raises(ConfigError, match="compile: true applies to the sequential executor only"):
            config_from_dict({"compile": True, "executor": executor, "device": device})


def test_compiled_sequential_model_follows_each_clients_parameters(monkeypatch):
    """The compiled model must read the flat vector that is overwritten for every client, not values
    captured at compile time. A backend that runs dynamo's graphs eagerly keeps this fast."""
    graphs = []

    def eager_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=eager_backend))
    train, indices = _data()
    updates = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        cfg = config_from_dict({"compile": compiled, "partition": {"clients": len(CLIENT_SIZES)},
                                "clients": {"batch_size": 8, "optimizer": "adam"}})
        torch.manual_seed(1)
        model = build_model("cnn", SHAPE, CLASSES, 4, 2)
        global_flat = bind_flat(copy.deepcopy(model)).detach().clone()
        executor = make_executor(cfg.executor, cfg.device, cfg.clients, cfg.compile, cfg.seed, model, train, indices,
                                 CLASSES)
        updates[compiled] = executor.train_round(1, [2, 3, 4], global_flat, FedAvg(None, _Server(cfg)))
    _assert_same_updates(updates[False], updates[True])
    assert len(graphs) == 1, "full batches must take one static compiled graph, short batches the eager path"


def _rounds(run_dir):
    with open(run_dir / "rounds.csv") as fh:
        return {(r["round"], r["split"], r["metric"]): float(r["value"]) for r in csv.DictReader(fh)}


def test_fedgen_runs_vectorised_until_its_generator_term_starts_then_falls_back(tiny, results_dir, capsys):
    """FedGen's round 1 is plain cross-entropy (vmapped); from round 2 its local loss draws noise from the
    client's own stream, so the runner announces the fallback once and the run still equals a
    sequential one."""
    runs, executions = {}, {}
    for executor in ("sequential", "vectorised"):
        cfg = config_from_dict(tiny(algorithm="fedgen", rounds=3, executor=executor))
        out = run(cfg, suite="t", results=results_dir, progress=False)
        runs[executor] = _rounds(out)
        executions[executor] = json.loads((out / "summary.json").read_text())["execution"]
    assert executions["sequential"]["executor_fallback"] is None
    assert executions["vectorised"]["executor"] == "sequential"
    assert executions["vectorised"]["executor_fallback"].startswith("sequential from round 2 on")
    assert runs["sequential"].keys() == runs["vectorised"].keys()
    for key, value in runs["sequential"].items():
        assert runs["vectorised"][key] == pytest.approx(value, abs=1e-4), key
    err = capsys.readouterr().err
    assert err.count("vectorised executor:") == 1
    assert "ctx.generator" in err and "from round 2 on" in err


def test_a_resumed_vectorised_run_keeps_its_fallback(tiny, tmp_path):
    """The fallback is checkpointed: a FedGen run that fell back in round 2, interrupted at round 3 and
    resumed, keeps training sequentially, matches the straight run byte for byte and reports round 2."""
    class Stop(Exception):
        pass

    def stop(rnd, metrics):
        if rnd == 3:
            raise Stop

    cfg = config_from_dict(tiny(algorithm="fedgen", rounds=4, executor="vectorised", checkpoint_every=1,
                                algorithms={"fedgen": {"generator_steps": 3}}))
    straight = run(cfg, suite="t", results=tmp_path / "a", progress=False)
    with pytest.raises(Stop):
        run(cfg, suite="t", results=tmp_path / "b", on_eval=stop, progress=False)
    resumed = run(cfg, suite="t", results=tmp_path / "b", progress=False)
    assert (resumed / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()
    execution = json.loads((resumed / "summary.json").read_text())["execution"]
    assert execution["executor_fallback"].startswith("sequential from round 2 on")

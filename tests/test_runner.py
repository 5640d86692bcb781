"""The shared loop: FedAvg/FedProx correctness, aggregation, reproducibility, resumable sweeps."""
from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from algorithms.fedavg import FedAvg
from algorithms.fedprox import FedProx, FedProxParams
from benchmarks.engine.api import Batch, ClientUpdate, LocalContext
from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.executors.sequential import SequentialExecutor, client_batches
from benchmarks.engine.flat import FlatOptimizer, bind_flat, flat_grad, unflatten
from benchmarks.models import build_model
from benchmarks.engine.runner import run
from benchmarks.engine.api import TensorData

REPO = Path(__file__).resolve().parents[1]


def _update(params, n):
    return ClientUpdate(client_id=0, params=torch.tensor(params, dtype=torch.float32), num_samples=n, steps=1,
                        samples_seen=n, label_counts=torch.zeros(2, dtype=torch.int64), train_loss=0.0)


class _Server:
    def __init__(self, aggregation):
        self.aggregation = aggregation


def test_uniform_and_sample_weighted_aggregation_by_hand():
    updates = [_update([1.0, 0.0], 1), _update([4.0, 3.0], 3)]
    glob = torch.zeros(2)
    uniform = FedAvg(None, _Server("uniform")).aggregate(1, glob, updates)
    weighted = FedAvg(None, _Server("samples")).aggregate(1, glob, updates)
    assert torch.allclose(uniform, torch.tensor([2.5, 1.5]))
    assert torch.allclose(weighted, torch.tensor([(1 * 1 + 3 * 4) / 4, (0 + 3 * 3) / 4]))


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model("convnet", (1, 8, 8), 3, width=4, depth=2)


def test_fedavg_one_client_one_full_batch_step_equals_plain_sgd():
    torch.manual_seed(1)
    x = torch.randn(10, 1, 8, 8)
    y = torch.randint(0, 3, (10,))
    plain = _tiny_model()
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    F.cross_entropy(plain(x), y).backward()
    opt.step()

    fed_model = _tiny_model()
    global_flat = bind_flat(copy.deepcopy(fed_model)).detach().clone()
    cfg = config_from_dict({"clients": {"optimizer": "sgd", "lr": 0.1, "batch_size": 10, "persistent_state": False},
                            "partition": {"clients": 1}})
    executor = SequentialExecutor(fed_model, TensorData(x, y), [torch.arange(10)], cfg.clients, 3, seed=0)
    update = executor.train_round(1, [0], global_flat, FedAvg(None, _Server("uniform")))[0]
    new_global = FedAvg(None, _Server("uniform")).aggregate(1, global_flat, [update])
    expected = torch.cat([p.detach().reshape(-1) for p in plain.parameters()])
    assert torch.allclose(new_global, expected, atol=1e-6)


@pytest.mark.parametrize("kind,kwargs", [("adam", {}), ("adam", {"weight_decay": 0.01}),
                                         ("sgd", {"momentum": 0.9, "weight_decay": 0.001}), ("sgd", {})])
def test_flat_optimizer_matches_torch(kind, kwargs):
    ref, mine = _tiny_model(), _tiny_model()
    flat = bind_flat(mine)
    params = list(mine.parameters())
    torch_opt = (torch.optim.Adam if kind == "adam" else torch.optim.SGD)(ref.parameters(), lr=0.01, **kwargs)
    flat_opt = FlatOptimizer(kind, 0.01, **kwargs)
    state = flat_opt.init_state(flat)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(6, 1, 8, 8, generator=gen)
        y = torch.randint(0, 3, (6,), generator=gen)
        torch_opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        torch_opt.step()
        flat_opt.step(flat, flat_grad(F.cross_entropy(mine(x), y), params), state)
    expected = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])
    assert torch.allclose(flat, expected, atol=1e-6)


def test_client_batches_epochs_and_steps():
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(10, 20)
    epoch = client_batches(idx, 4, local_epochs=2, local_steps=0, generator=gen)
    assert [len(b) for b in epoch] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(epoch[:3]).tolist()) == list(range(10, 20))
    steps = client_batches(idx, 4, local_epochs=1, local_steps=5, generator=gen)
    assert [len(b) for b in steps] == [4, 4, 2, 4, 4]


def _proximal_context(model, global_flat):
    return LocalContext(1, 0, 0, global_flat, unflatten(global_flat, list(model.parameters())), torch.Generator())


def test_fedprox_gradient_contains_mu_times_drift():
    model = _tiny_model()
    flat = bind_flat(model)
    global_flat = flat.detach().clone() + 0.05 * torch.randn_like(flat)
    batch = Batch(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    ctx = _proximal_context(model, global_flat)
    params = list(model.parameters())
    plain = flat_grad(FedAvg(None, _Server("uniform")).local_loss(model, batch, ctx), params)
    mu = 0.3
    prox = flat_grad(FedProx(FedProxParams(mu=mu), _Server("uniform")).local_loss(model, batch, ctx), params)
    assert torch.allclose(prox - plain, mu * (flat.detach() - global_flat), atol=1e-6)


def _read(path):
    return Path(path).read_bytes()


def test_fedprox_with_mu_zero_equals_fedavg_bit_for_bit(tiny, results_dir):
    avg = run(config_from_dict(tiny(algorithm="fedavg")), suite="t", progress=False)
    prox = run(config_from_dict(tiny(algorithm="fedprox", algorithms={"fedprox": {"mu": 0.0}})), suite="t",
               progress=False)
    prox_rows = _read(prox / "rounds.csv").decode().splitlines()
    assert _read(avg / "rounds.csv").decode().splitlines() == [r for r in prox_rows if ",server,proximal_penalty," not in r]
    assert sum(",server,proximal_penalty,0.0" in r for r in prox_rows) == 2  # its diagnostic, zero at mu = 0
    with_mu = run(config_from_dict(tiny(algorithm="fedprox", algorithms={"fedprox": {"mu": 1.0}})), suite="t",
                  progress=False)
    assert _read(avg / "rounds.csv") != _read(with_mu / "rounds.csv")


def test_same_config_gives_byte_identical_rounds_csv(tiny, tmp_path):
    cfg = config_from_dict(tiny(rounds=3))
    first = run(cfg, suite="t", results=tmp_path / "a", progress=False)
    second = run(cfg, suite="t", results=tmp_path / "b", progress=False)
    assert _read(first / "rounds.csv") == _read(second / "rounds.csv")
    other_seed = run(config_from_dict(tiny(rounds=3, seed=1)), suite="t", results=tmp_path / "c", progress=False)
    assert _read(first / "rounds.csv") != _read(other_seed / "rounds.csv")


def test_run_directory_contents(tiny, results_dir):
    cfg = config_from_dict(tiny(rounds=2))
    out = run(cfg, suite="t", progress=False)
    assert out.name == cfg.run_id() and out.parent == results_dir / "t"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["config"] == cfg.experiment_dict()
    assert "threads" not in summary["config"] and "checkpoint_every" not in summary["config"]
    assert "cpu_kernels" not in summary["config"]
    assert summary["execution"] == {"threads": 1, "checkpoint_every": 10, "cpu_kernels": "", "executor": "sequential",
                                    "executor_fallback": None}
    assert summary["algorithm_title"] == "FedAvg"
    assert set(summary["versions"]) >= {"python", "torch", "numpy", "cpu", "cpu_capability", "onednn", "blas",
                                        "aten_cpu_capability_env", "onednn_max_cpu_isa_env"}
    assert summary["versions"]["onednn"] != "absent" and summary["execution"]["threads"] >= 1
    assert summary["git_revision"]
    assert summary["best_val"]["round"] in (1, 2)
    assert len(summary["partition"]["class_counts"]) == cfg.partition.clients
    rows = list(csv.DictReader(open(out / "rounds.csv")))
    assert {(r["split"], r["metric"]) for r in rows} >= {("test", "accuracy"), ("val", "loss"), ("train", "loss")}
    assert {r["round"] for r in rows if r["split"] == "test"} == {"0", "1", "2"}
    timings = list(csv.DictReader(open(out / "timings.csv")))
    times = {r["metric"] for r in timings}
    assert {"round_seconds", "client_seconds", "server_seconds", "eval_seconds"} <= times
    # every wall timing has its CPU twin, round by round
    wall = {(r["round"], r["metric"]) for r in timings if not r["metric"].endswith("_cpu_seconds")}
    cpu = {(r["round"], r["metric"].replace("_cpu_seconds", "_seconds")) for r in timings
           if r["metric"].endswith("_cpu_seconds")}
    assert wall == cpu
    cpu_total = sum(float(r["value"]) for r in timings if r["metric"] == "round_cpu_seconds")
    assert summary["timing"]["total_cpu_seconds"] == pytest.approx(cpu_total) and cpu_total > 0
    assert not list((results_dir / "t").glob(".tmp-*"))


def test_cpu_clock_does_not_count_waiting():
    """The CPU clock measures work: a process that sleeps (as one paused, or waiting for a core) accrues wall
    seconds only."""
    from benchmarks.engine.clock import Stopwatch
    watch = Stopwatch()
    time.sleep(0.3)
    asleep = watch.elapsed()
    assert asleep.wall >= 0.3 and asleep.cpu < 0.1
    watch = Stopwatch()
    while watch.elapsed().wall < 0.3:
        sum(range(1000))
    assert watch.elapsed().cpu > 0.02  # busy: some of it on a core, however loaded the host


def test_client_sampling_identical_across_algorithms(tiny, monkeypatch, tmp_path):
    seen = {}
    import benchmarks.engine.runner as runner_mod
    original = runner_mod.sample_clients

    def spy(rng, n, k):
        clients = original(rng, n, k)
        seen.setdefault(current[0], []).append(clients)
        return clients

    monkeypatch.setattr(runner_mod, "sample_clients", spy)
    current = [None]
    for algo in ("fedavg", "fedprox"):
        current[0] = algo
        run(config_from_dict(tiny(algorithm=algo, rounds=3)), suite="t", results=tmp_path / algo,
            progress=False)
    assert seen["fedavg"] == seen["fedprox"]
    assert len({tuple(c) for c in seen["fedavg"]}) > 1


def test_killed_sweep_restarts_without_redoing_finished_runs(tmp_path):
    suite = tmp_path / "mini.toml"
    suite.write_text("""
[suite]
name = "mini"
[base]
rounds = 2
[base.dataset]
name = "synthetic"
[base.partition]
clients = 4
[base.model]
width = 4
depth = 2
[base.clients]
participation = 0.5
[axes]
seed = [0, 1, 2, 3, 4, 5]
""")
    env = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_RESULTS": str(tmp_path / "res")}
    cmd = [sys.executable, "-m", "benchmarks", "sweep", str(suite), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    suite_dir = tmp_path / "res" / "mini"
    deadline = time.time() + 120
    while time.time() < deadline and len(_finished(suite_dir)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: (p / "summary.json").stat().st_mtime_ns for p in _finished(suite_dir)}
    assert 2 <= len(finished) < 6
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = {p.name: (p / "summary.json").stat().st_mtime_ns for p in _finished(suite_dir)}
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in finished.items())


def _finished(suite_dir: Path) -> list[Path]:
    if not suite_dir.exists():
        return []
    return [p for p in suite_dir.iterdir() if not p.name.startswith(".") and (p / "summary.json").exists()]


@pytest.mark.parametrize("override,message", [
    ({"partition": {"alpha": -1}}, "partition.alpha: -1 must be > 0"),
    ({"partition": {"scheme": "zipf"}}, "partition.scheme: 'zipf' is not one of iid, dirichlet"),
    ({"clients": {"participation": 1.5}}, "clients.participation: 1.5 must be <= 1"),
    ({"clients": {"optimizer": "rmsprop"}}, "clients.optimizer: 'rmsprop' is not one of sgd, adam"),
    ({"rounds": "ten"}, "rounds: 'ten' must be an integer"),
    ({"rounds": 0}, "rounds: 0 must be >= 1"),
    ({"dataset": {"name": "mnist"}}, "dataset.name: 'mnist' is not one of fmnist, cifar10, cifar100, cinic10, synthetic"),
    ({"dataset": {"proxy_source": "test"}}, "dataset.proxy_source: 'test' is not one of"),
    ({"algorithm": "scafold"}, "algorithm: 'scafold' is not one of"),
    ({"bogus": 1}, "bogus: unknown setting"),
    ({"partition": {"beta": 1}}, "partition.beta: unknown setting"),
    ({"algorithms": {"fedavg": {"mu": 1}}}, "algorithms.fedavg.mu: unknown setting"),
    ({"algorithms": {"fedprox": {"mu": -1}}, "algorithm": "fedprox"}, "algorithms.fedprox.mu: -1 must be >= 0"),
    ({"clients": {"per_round": 99}}, "clients.per_round: 99 must be <= partition.clients"),
    ({"clients": {"local_epochs": 0}}, "clients.local_epochs: 0 with clients.local_steps 0"),
    ({"device": "tpu"}, "device: 'tpu' is not one of cpu, cuda, cuda:N"),
])
def test_invalid_configs_give_one_line_naming_the_field(tiny, override, message):
    from benchmarks.core.typed import ConfigError
    with pytest.raises(ConfigError) as info:
        config_from_dict(tiny(**override))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_reports_bad_input_in_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = [\n")
    env = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_RESULTS": str(tmp_path / "res")}
    for args, needle in ((["--config", str(bad)], "is not valid TOML"),
                         (["--set", "partition.alpha=0"], "partition.alpha: 0 must be > 0")):
        proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_set_overrides_parse_toml_literals():
    from benchmarks.experiments.config import apply_overrides
    data = apply_overrides({}, ["partition.alpha=0.04", "clients.persistent_state=false", "algorithm=fedprox",
                                "dataset.name=\"cifar10\""])
    assert data == {"partition": {"alpha": 0.04}, "clients": {"persistent_state": False}, "algorithm": "fedprox",
                    "dataset": {"name": "cifar10"}}


def test_models_split_into_features_and_head():
    for name, shape in (("convnet", (1, 28, 28)), ("convnet", (3, 32, 32)), ("cnn", (1, 28, 28)),
                        ("resnet18", (3, 32, 32))):
        model = build_model(name, shape, 10, width=8, depth=3)
        x = torch.randn(2, *shape)
        z = model.features(x)
        assert z.shape == (2, model.feature_dim)
        assert torch.equal(model.head(z), model(x))
        assert not list(model.buffers())
    conv28 = build_model("convnet", (1, 28, 28), 10, width=8, depth=3)
    conv32 = build_model("convnet", (3, 32, 32), 10, width=8, depth=3)
    assert conv28.feature_dim == conv32.feature_dim == 8 * 4 * 4


def test_avgpool2_matches_torch_avgpool_on_even_and_odd_sizes():
    from benchmarks.models import AvgPool2
    for shape in ((2, 3, 8, 8), (2, 3, 7, 9), (1, 1, 5, 4)):
        x = torch.randn(*shape)
        assert torch.allclose(AvgPool2()(x), F.avg_pool2d(x, 2), atol=1e-6)


def test_avgpool2_hand_written_gradient_is_bitwise_the_slice_form_and_twice_differentiable():
    """The custom gradient must not move a bit of ordinary training (committed results stay
    reproducible), must be right to second order (DynaFed differentiates through it twice) and must
    run under vmap (the vectorised executor)."""
    from benchmarks.models import AvgPool2

    def slices(x):
        return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25

    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    upstream = torch.randn(4, 8, 8, 8)
    assert torch.equal(AvgPool2()(x), slices(x))
    assert torch.equal(torch.autograd.grad(AvgPool2()(x), x, upstream)[0],
                       torch.autograd.grad(slices(x), x, upstream)[0])
    odd = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(AvgPool2(), (odd,))
    assert torch.autograd.gradgradcheck(AvgPool2(), (odd,))
    batch = torch.randn(3, 2, 4, 8, 8)
    per_sample = torch.func.vmap(torch.func.grad(lambda t: AvgPool2()(t).pow(2).sum()))(batch)
    reference = torch.stack([torch.func.grad(lambda t: slices(t).pow(2).sum())(b) for b in batch])
    assert torch.equal(per_sample, reference)


def test_execution_settings_reuse_the_finished_run(tiny, results_dir):
    """threads and checkpoint_every cannot change a number, so they are not part of the run id: a rerun
    with other values finds the finished run instead of making a second one."""
    first = run(config_from_dict(tiny(rounds=2)), suite="t", progress=False)
    stamp = (first / "summary.json").stat().st_mtime_ns
    for extra in ({"threads": 2}, {"checkpoint_every": 1}, {"threads": 2, "checkpoint_every": 0}):
        again = run(config_from_dict(tiny(rounds=2, **extra)), suite="t", progress=False)
        assert again == first and (again / "summary.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (results_dir / "t").iterdir()] == [first.name]


def test_a_bug_in_a_vectorised_objective_is_raised_not_hidden_by_the_fallback(tiny):
    """Only vmap's own limits switch to the sequential executor; any other error is a bug and surfaces."""
    from algorithms.fedavg import FedAvg
    from conftest import wired

    class Broken(FedAvg):
        def local_loss(self, model, batch, ctx):
            raise RuntimeError("shape mismatch in my objective")

    loop = wired(config_from_dict(tiny(executor="vectorised")))
    algorithm = Broken(None, loop.server)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        loop.executor.train_round(1, [0, 1], loop.global_flat, algorithm, {})
    assert loop.executor.fallback is None


def test_a_resumed_run_keeps_the_thread_count_it_started_with(tiny, results_dir):
    """Thread count changes float rounding (measured: losses differ in the 8th digit from round 1), so a
    run interrupted under threads=2 and resumed with threads=1 continues with 2 and matches a straight run."""
    class Stop(Exception):
        pass

    def stop(rnd, metrics):
        if rnd == 2:
            raise Stop

    straight = run(config_from_dict(tiny(rounds=4, threads=2)), suite="a", progress=False)
    with pytest.raises(Stop):
        run(config_from_dict(tiny(rounds=4, threads=2, checkpoint_every=1)), suite="b", on_eval=stop,
            progress=False)
    resumed = run(config_from_dict(tiny(rounds=4, threads=1, checkpoint_every=1)), suite="b", progress=False)
    assert (resumed / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()
    assert json.loads((resumed / "summary.json").read_text())["execution"]["threads"] == 2
    torch.set_num_threads(1)


def test_a_run_resumed_from_a_checkpoint_without_cpu_totals_reports_no_cpu_total(tiny, results_dir):
    """A checkpoint written before the CPU clock existed holds wall totals only: the resumed run must not
    report a CPU total that covers only its resumed rounds, while those rounds still get their CPU rows."""
    class Stop(Exception):
        pass

    def stop(rnd, metrics):
        if rnd == 2:
            raise Stop

    cfg = config_from_dict(tiny(rounds=4, checkpoint_every=1))
    with pytest.raises(Stop):
        run(cfg, suite="old", on_eval=stop, progress=False)
    (checkpoint,) = (results_dir / "old").glob(".tmp-*/checkpoint.pt")
    state = torch.load(checkpoint, weights_only=True)
    state["totals"] = {k: v for k, v in state["totals"].items() if not k.endswith("_cpu")}
    torch.save(state, checkpoint)
    resumed = run(cfg, suite="old", progress=False)
    timing = json.loads((resumed / "summary.json").read_text())["timing"]
    assert "total_seconds" in timing and "total_cpu_seconds" not in timing
    rows = list(csv.DictReader(open(resumed / "timings.csv")))
    assert {r["round"] for r in rows if r["metric"] == "round_cpu_seconds"} >= {"3", "4"}


def test_a_run_past_its_deadline_stops_after_a_whole_round_and_resumes_byte_identical(tiny, results_dir):
    """The GPU check's time budget: a deadline already passed stops the run after round 1 with that round's
    rows written and a checkpoint; the same call without a deadline resumes it to a straight run's bytes."""
    from benchmarks.engine.runner import RunStopped

    straight = run(config_from_dict(tiny(rounds=3)), suite="straight", progress=False)
    cfg = config_from_dict(tiny(rounds=3))
    with pytest.raises(RunStopped) as stopped:
        run(cfg, suite="stopped", progress=False, deadline=time.monotonic() - 1)
    assert (stopped.value.rounds_done, stopped.value.rounds) == (1, 3)
    assert stopped.value.run_dir.name.startswith(".tmp-") and (stopped.value.run_dir / "checkpoint.pt").is_file()
    rows = list(csv.DictReader(open(stopped.value.run_dir / "rounds.csv")))
    assert {r["round"] for r in rows} == {"0", "1"}
    resumed = run(cfg, suite="stopped", progress=False)
    assert (resumed / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()


def test_a_deadline_without_checkpoints_leaves_rows_but_no_checkpoint(tiny, results_dir):
    from benchmarks.engine.runner import RunStopped

    with pytest.raises(RunStopped) as stopped:
        run(config_from_dict(tiny(rounds=3, checkpoint_every=0)), suite="s", progress=False,
            deadline=time.monotonic() - 1)
    assert not (stopped.value.run_dir / "checkpoint.pt").exists()
    assert {r["round"] for r in csv.DictReader(open(stopped.value.run_dir / "timings.csv"))} == {"1"}


def test_a_deadline_in_the_future_changes_nothing(tiny, results_dir):
    straight = run(config_from_dict(tiny(rounds=2)), suite="a", progress=False)
    timed = run(config_from_dict(tiny(rounds=2)), suite="b", progress=False, deadline=time.monotonic() + 3600)
    assert (timed / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()


def test_checkpoint_tensors_go_back_to_the_run_device():
    """Checkpoints load onto the CPU; a CUDA run's client and server stores must move back (checked with the
    meta device, which any machine has)."""
    from benchmarks.engine.checkpoint import tensors_to

    state = {"optimizer": {3: {"exp_avg": torch.zeros(2), "step": 4}}, "algorithm": [torch.ones(1), (torch.ones(1), "x")]}
    moved = tensors_to(state, torch.device("meta"))
    assert moved["optimizer"][3]["exp_avg"].device.type == "meta" and moved["optimizer"][3]["step"] == 4
    assert moved["algorithm"][0].is_meta and moved["algorithm"][1][0].is_meta and moved["algorithm"][1][1] == "x"
    assert isinstance(moved["algorithm"][1], tuple)


def test_a_deadline_passed_in_the_last_round_finishes_the_run(tiny, results_dir):
    straight = run(config_from_dict(tiny(rounds=1)), suite="a", progress=False)
    late = run(config_from_dict(tiny(rounds=1)), suite="b", progress=False, deadline=time.monotonic() - 1)
    assert (late / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()

"""The Flower adapter (``benchmarks.flower``) computes what hetbench's runner computes.

Every check runs the same config on the same federation, clients and seeds through ``RoundLoop`` (the
runner's loop, without a results folder) and through the adapter's strategy and client app; the final
global parameters must be bit-identical, and the validation accuracy of every round equal. Two ways
through Flower:
- Flower's own simulation (``flwr.simulation.run_simulation``: the ServerApp in a thread, the
  ClientApps in Ray actors, messages and contexts pickled between processes) for DynaFed, three rounds
  with ``trajectory_length = 3``: two FedAvg rounds that record its trajectory, then a round in which
  the server synthesises and fine-tunes the aggregate.
- For FedAvg (two rounds) and every other registered algorithm, the same strategy and client app driven
  through an in-process ``Grid`` (``InProcessGrid`` below): each message and reply is pickled, as Ray
  pickles them, and each node keeps its ``Context`` between messages, as the simulation does; only the
  transport is simpler. Why not all through ``run_simulation``: it starts and shuts down a Ray cluster
  per call, 20-50 s each on this 2-core machine under load (the rounds themselves take about a second),
  so one is all a test file of about a minute can afford. Algorithms that declare they cannot run
  apart from their server must be refused.
"""
from __future__ import annotations

import os
import pickle

import pytest
import torch

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no network calls from the tests
pytest.importorskip("flwr", reason="the `flower` extra is not installed")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.common.constant import SUPERLINK_NODE_ID  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from algorithms import algorithm_names, get_algorithm  # noqa: E402
from benchmarks.core.typed import ConfigError  # noqa: E402
from benchmarks.engine.federation import build_federation  # noqa: E402
from benchmarks.engine.runner import RoundLoop  # noqa: E402
from benchmarks.experiments.config import config_from_dict  # noqa: E402
from benchmarks.flower import AlgorithmStrategy, ServerData, client_app, client_data, simulate  # noqa: E402
from benchmarks.flower import records  # noqa: E402

CPU = torch.device("cpu")


class _Discard:
    """The runner's results folder, for a run whose numbers are read from the loop itself."""

    def add(self, *row) -> None:
        pass

    def add_time(self, *row) -> None:
        pass


class InProcessGrid(Grid):
    """Flower's ``Grid`` over a ClientApp called in this process, one node per client. Node ids are
    large and not in client order, as Flower's are; messages and replies are pickled both ways."""

    def __init__(self, app, n_clients: int):
        self.app = app
        node_ids = [(7_919 * (i + 1)) % 100_003 * 1_000_003 for i in range(n_clients)]
        self.contexts = {node: Context(run_id=1, node_id=node, state=RecordDict(), run_config={},
                                       node_config={"partition-id": i, "num-partitions": n_clients})
                         for i, node in reversed(list(enumerate(node_ids)))}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            message = pickle.loads(pickle.dumps(message))
            reply = self.app(message, self.contexts[message.metadata.dst_node_id])
            replies.append(pickle.loads(pickle.dumps(reply)))
        return replies

    # Not used by the strategy: the in-process transport needs no run or message store.
    def set_run(self, run) -> None:
        raise NotImplementedError

    @property
    def run(self):
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        raise NotImplementedError

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError


def adapter_config(tiny, name: str, rounds: int = 2, **budget):
    cls = get_algorithm(name)
    hparams = {**cls.tiny_budget, **budget}
    extra = {"algorithms": {name: hparams}} if hparams else {}
    return config_from_dict(tiny(**{**cls.tiny_settings, "algorithm": name, "rounds": rounds, **extra}))


def run_both(cfg, through_flower):
    """(runner's loop, finished strategy) for ``cfg`` on one federation."""
    fed = build_federation(cfg.dataset, cfg.partition, CPU)
    loop = RoundLoop(cfg, fed, CPU, _Discard(), progress=False, on_eval=None)
    loop.start()
    return loop, through_flower(cfg, fed)


@pytest.fixture
def server_identity(monkeypatch):
    """Who this process is to Flower's messages, as run_simulation sets it for its ServerApp."""
    for key, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", SUPERLINK_NODE_ID)):
        monkeypatch.setattr(TaskIdentity, key, value)


def in_process(cfg, fed) -> AlgorithmStrategy:
    strategy = AlgorithmStrategy(cfg, ServerData.of(fed))
    grid = InProcessGrid(client_app(cfg, client_data(fed), fed.num_classes), cfg.partition.clients)
    strategy.start(grid, evaluate_fn=strategy.evaluate_validation)
    # Clients keep their Adam moments across rounds (clients.persistent_state) in Flower's context.
    assert any(records.OPTIMIZER_STATE in context.state for context in grid.contexts.values())
    return strategy


def assert_same_run(loop, strategy) -> None:
    assert torch.equal(strategy.global_flat, loop.global_flat), \
        f"max difference {(strategy.global_flat - loop.global_flat).abs().max().item():.3g}"
    final = records.flat_from_record(strategy.result.arrays, strategy.global_model, CPU)
    assert torch.equal(final, loop.global_flat)
    flower_val = {rnd: m["val.accuracy"] for rnd, m in strategy.result.evaluate_metrics_serverapp.items()}
    assert flower_val == {rnd: h["val_accuracy"] for rnd, h in loop.history.items()}


@pytest.mark.slow
def test_dynafed_under_flower_simulation_equals_runner(tiny):
    pytest.importorskip("ray", reason="Flower's simulation runs its client apps on Ray")
    loop, strategy = run_both(adapter_config(tiny, "dynafed", rounds=3, trajectory_length=3), simulate)
    assert_same_run(loop, strategy)
    # The server-side mechanism ran in round 3, scored on the server's validation split.
    assert strategy.algorithm.synthesised
    assert strategy.result.train_metrics_clientapp[3]["server.finetune_steps"] > 0
    assert "server.synthetic_only_val_accuracy" in strategy.result.train_metrics_clientapp[3]


@pytest.mark.parametrize("name", [n for n in algorithm_names() if n != "dynafed"])
def test_in_process_flower_equals_runner_or_refused(tiny, server_identity, name):
    cls = get_algorithm(name)
    cfg = adapter_config(tiny, name)
    if cls.client_reads_server_state or cls.extends_client_data:
        with pytest.raises(ConfigError, match="cannot run under Flower"):
            AlgorithmStrategy(cfg, ServerData.of(build_federation(cfg.dataset, cfg.partition, CPU)))
        return
    loop, strategy = run_both(cfg, in_process)
    assert_same_run(loop, strategy)


def test_records_round_trip_exactly():
    values = {"step": 3, "exp_avg": torch.randn(5, dtype=torch.float64), "momentum_buffer": None,
              "norm": torch.tensor(2.5), "counts": torch.arange(4), "flag": True, "lr": 0.1}
    content = RecordDict()
    records.put_dict(content, "state", values)
    back = records.get_dict(content, "state", CPU)
    assert list(back) == list(values)
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            assert back[key].dtype == value.dtype and torch.equal(back[key], value), key
        else:
            assert back[key] == value and type(back[key]) is type(value), key
    assert records.get_dict(content, "absent", CPU) is None

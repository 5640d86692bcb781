"""A Flower strategy that runs a registered hetbench algorithm's server side.

Each Flower round is one round of hetbench's runner, in the same order: ``configure_train`` calls the
algorithm's ``before_round``, samples the round's clients with the runner's seeded sampler (not
Flower's), and sends each sampled client's node the global parameters and ``client_config``;
``aggregate_train`` turns the replies back into ``ClientUpdate``s, in client-id order as the runner
has them, and calls ``aggregate`` and ``after_aggregate``. The algorithm's server context holds only
the ``ServerData`` given to the strategy (validation split, proxy images, reserve), never the test set.

``start`` first waits for one node per client and queries them: the answers map client ids to Flower
node ids (nodes are addressed by client, since each keeps its client's state) and carry the clients'
``client_summary`` for algorithms that set ``shares_client_data``; then the algorithm's ``setup``
sees the initial model, and Flower's own round loop runs. ``evaluate_validation`` is a centralised
``evaluate_fn`` on the validation split. Deviations from the runner: no federated evaluation
(``configure_evaluate`` sends nothing: hetbench evaluates on the server), no checkpoints or resume,
no divergence stop, no run folder (call ``algorithm.write_artifacts`` yourself); the round's training
and server diagnostics (``train.*``, ``server.*``) and the wall seconds of each timed part of the server's
work (``time.server_<part>_seconds``) come back as Flower train metrics instead of rounds.csv and
timings.csv rows. A client that fails fails the run: hetbench's protocol has no partial rounds.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from logging import INFO

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from benchmarks.engine.api import ClientUpdate, evaluate
from benchmarks.engine.runner import client_drift, open_round, round_train_metrics
from benchmarks.engine.settings import RunConfig
from benchmarks.flower import records, wiring
from benchmarks.flower.wiring import ServerData


class AlgorithmStrategy(Strategy):
    """``cfg.algorithm``'s server side as a Flower strategy, over ``data`` (server-side data only)."""

    def __init__(self, cfg: RunConfig, data: ServerData):
        wiring.check_supported(cfg)
        self.cfg, self.data = cfg, data
        new_model = wiring.model_builder(cfg, data.input_shape, data.num_classes)
        self.global_model, self.global_flat = wiring.initial_global_model(cfg, new_model)
        self.server = wiring.algorithm_context(cfg, new_model, data)
        self.algorithm = wiring.new_algorithm(cfg, self.server)
        self.sampler = wiring.client_sampler(cfg)
        self.node_of: dict[int, int] = {}
        self.sent = 0  # training messages of the round, each of which must be answered
        self.result: Result | None = None

    def summary(self) -> None:
        log(INFO, "\t├──> hetbench algorithm %s (%s), %d clients, %d a round", self.algorithm.name,
            self.algorithm.title, self.cfg.partition.clients, self.cfg.clients_per_round)

    def initial_arrays(self) -> ArrayRecord:
        return records.params_record(self.global_model, self.global_flat)

    # ---- the run ------------------------------------------------------------------------------
    def start(self, grid: Grid, initial_arrays: ArrayRecord | None = None, num_rounds: int | None = None,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None) -> Result:
        """Flower's ``Strategy.start`` with the run's defaults (its initial model and rounds), after the
        nodes have said which clients they are and the algorithm has seen the initial model."""
        num_rounds = self.cfg.rounds if num_rounds is None else num_rounds
        if num_rounds != self.cfg.rounds:
            raise ValueError(f"num_rounds: {num_rounds}, but the algorithm was set up for rounds = "
                             f"{self.cfg.rounds} (it may schedule work by the last round)")
        initial_arrays = self.initial_arrays() if initial_arrays is None else initial_arrays
        self.load(initial_arrays)
        self.connect(grid, timeout)
        self.algorithm.setup(self.global_model, self.global_flat)
        self.result = super().start(grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
                                    evaluate_fn)
        return self.result

    def connect(self, grid: Grid, timeout: float) -> None:
        """Wait for a node per client, learn which node is which client, and hand the algorithm the
        clients' summaries if it asks for them (once, before round 1, as the runner does)."""
        expected = self.cfg.partition.clients
        deadline = time.monotonic() + timeout
        while len(nodes := list(grid.get_node_ids())) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(nodes)} Flower nodes connected in {timeout:g} s; the run has "
                                   f"{expected} clients, one node each")
            time.sleep(0.1)
        want = self.algorithm.shares_client_data
        ask = RecordDict({records.NODE: ConfigRecord({"want-summary": want})})
        replies = check_replies(grid.send_and_receive(
            [Message(ask, dst_node_id=node, message_type=MessageType.QUERY) for node in nodes], timeout=timeout),
            len(nodes))
        answers = {int(r.content[records.NODE]["partition-id"]): r for r in replies}
        if sorted(answers) != list(range(expected)):
            raise RuntimeError(f"the nodes' partition ids are {sorted(answers)}; expected 0..{expected - 1}, "
                               "one node per client")
        self.node_of = {cid: reply.metadata.src_node_id for cid, reply in answers.items()}
        if want:
            device = self.server.device
            self.algorithm.receive_client_summaries(
                [records.get_dict(answers[cid].content, records.SUMMARY, device) for cid in range(expected)])

    # ---- a round ------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.load(arrays)
        clients = open_round(server_round, self.cfg, self.server, self.algorithm, self.sampler, self.global_model,
                             self.global_flat)
        client_config = self.algorithm.client_config(server_round)
        params = records.params_record(self.global_model, self.global_flat)
        messages = []
        for cid in clients:
            content = RecordDict({records.PARAMS: params, records.ROUND_INFO: ConfigRecord(
                {**config, "server-round": server_round, "client-id": cid})})
            records.put_dict(content, records.CLIENT_CONFIG, client_config)
            messages.append(Message(content, dst_node_id=self.node_of[cid], message_type=MessageType.TRAIN))
        self.sent = len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord, MetricRecord]:
        # In client-id order, as the runner's executor returns them: float sums depend on the order.
        updates = sorted(map(self.client_update, check_replies(replies, self.sent)), key=lambda u: u.client_id)
        drift = client_drift(self.global_flat, updates)
        with torch.no_grad():
            self.global_flat.copy_(self.algorithm.aggregate(server_round, self.global_flat, updates))
        self.algorithm.after_aggregate(server_round, self.global_model, self.global_flat, updates)
        metrics = MetricRecord({
            **{f"train.{metric}": value for metric, value in round_train_metrics(updates, drift).items()},
            **{f"server.{metric}": value for metric, value in sorted(self.server.diagnostics.items())},
            **{f"time.server_{part}_seconds": elapsed.wall for part, elapsed in sorted(self.server.timings.items())},
        })
        return records.params_record(self.global_model, self.global_flat), metrics

    def client_update(self, reply: Message) -> ClientUpdate:
        content, device = reply.content, self.server.device
        info = content[records.UPDATE]
        return ClientUpdate(client_id=int(info["client-id"]),
                            params=records.flat_from_record(content[records.PARAMS], self.global_model, device),
                            num_samples=int(info["num-examples"]), steps=int(info["steps"]),
                            samples_seen=int(info["samples-seen"]),
                            label_counts=torch.tensor(info["label-counts"], dtype=torch.int64),
                            train_loss=float(info["train-loss"]),
                            payload=records.get_dict(content, records.PAYLOAD, device) or {})

    # ---- evaluation: on the server's validation split, never on clients or the test set -------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def evaluate_validation(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """A centralised ``evaluate_fn``: accuracy and loss of ``arrays`` on the validation split."""
        if len(self.data.val) == 0:
            return None
        model, flat = self.server.scratch_model("flower-evaluation")
        with torch.no_grad():
            flat.copy_(records.flat_from_record(arrays, model, self.server.device))
        accuracy, loss = evaluate(model, self.data.val, self.cfg.eval_batch_size)
        return MetricRecord({"val.accuracy": accuracy, "val.loss": loss})

    def load(self, arrays: ArrayRecord) -> None:
        with torch.no_grad():
            self.global_flat.copy_(records.flat_from_record(arrays, self.global_model, self.server.device))


def check_replies(replies: Iterable[Message], sent: int) -> list[Message]:
    """The replies, if every message sent was answered without an error."""
    replies = list(replies)
    failed = [r for r in replies if r.has_error()]
    if failed:
        reasons = "; ".join(f"node {r.metadata.src_node_id}: {r.error.reason}" for r in failed)
        raise RuntimeError(f"{len(failed)} of {sent} Flower nodes failed: {reasons}")
    if len(replies) != sent:
        raise RuntimeError(f"{len(replies)} of {sent} Flower nodes answered before the timeout")
    return replies

"""A Flower ClientApp that trains one hetbench client with its algorithm's local objective.

A node is one hetbench client: its partition id (``node_config["partition-id"]``, set by Flower's
simulation) is the client id, and it holds that client's training images only. A train message
carries the global parameters, the round, and the algorithm's ``client_config``; the node runs the
engine's own client training (``SequentialExecutor.train_round``: ``init_client_state``,
``local_loss``, ``step_correction``, ``finish_client``, the same minibatch stream and optimizer) and
replies with its parameters, counts, loss and the algorithm's payload. What the runner's executor keeps
per client between rounds, the optimizer state (when ``clients.persistent_state``) and the algorithm's
client state, the node keeps in Flower's ``Context.state``.

The node's copy of the algorithm is built with a ``ServerContext`` holding no server data, so a client
hook that reached for it (the validation split, the proxy) fails instead of reading what a real client
could not. Deviations from the runner: clients always train sequentially and eagerly (no vectorised
executor, no ``compile``); a query message before round 1 tells the server which node is which client
and, for algorithms that set ``shares_client_data``, carries the node's ``client_summary``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from benchmarks.engine.api import TensorData
from benchmarks.engine.executors.sequential import SequentialExecutor
from benchmarks.engine.federation import Federation
from benchmarks.engine.settings import RunConfig
from benchmarks.flower import records, wiring


def client_data(fed: Federation) -> list[TensorData]:
    """Each client's own training images and labels, in client-id (partition-id) order."""
    device = fed.train.x.device
    return [TensorData(fed.train.x[idx.to(device)], fed.train.y[idx.to(device)]) for idx in fed.client_indices]


class Node:
    """One message's worth of a hetbench client: the engine's executor over this node's data alone, with
    the client's stored states loaded from (and saved back to) the Flower context."""

    def __init__(self, cfg: RunConfig, data: TensorData, num_classes: int, client_id: int):
        self.cfg, self.data, self.client_id = cfg, data, client_id
        self.device = torch.device(cfg.device)
        # The run's thread count, as the runner sets it: threads change float rounding.
        torch.set_num_threads(cfg.execution.threads)
        input_shape = tuple(data.x.shape[1:])
        new_model = wiring.model_builder(cfg, input_shape, num_classes)
        # Built off torch's global stream (its weights are overwritten by every round's global ones), so
        # that a node run in the server's process cannot shift the server's random numbers.
        with torch.random.fork_rng(devices=[]):
            model = new_model().to(self.device)
            self.algorithm = wiring.new_algorithm(
                cfg, wiring.algorithm_context(cfg, new_model, wiring.node_data(num_classes, input_shape, self.device)))
        # The node's data as the executor's whole training set: client ``client_id`` owns every row.
        self.executor = SequentialExecutor(model, data, {client_id: torch.arange(len(data))}, cfg.clients,
                                           num_classes, cfg.seed)

    def train(self, msg: Message, state: RecordDict) -> RecordDict:
        content = msg.content
        rnd = int(content[records.ROUND_INFO]["server-round"])
        global_flat = records.flat_from_record(content[records.PARAMS], self.executor.model, self.device)
        config = records.get_dict(content, records.CLIENT_CONFIG, self.device) or {}
        self.load_states(state)
        update = self.executor.train_round(rnd, [self.client_id], global_flat, self.algorithm, config)[0]
        self.save_states(state)
        reply = RecordDict({
            records.PARAMS: records.params_record(self.executor.model, update.params),
            records.UPDATE: MetricRecord({"client-id": update.client_id, "num-examples": update.num_samples,
                                          "steps": update.steps, "samples-seen": update.samples_seen,
                                          "train-loss": update.train_loss,
                                          "label-counts": [int(c) for c in update.label_counts]}),
        })
        records.put_dict(reply, records.PAYLOAD, update.payload)
        return reply

    def load_states(self, state: RecordDict) -> None:
        optimizer = records.get_dict(state, records.OPTIMIZER_STATE, self.device)
        algorithm = records.get_dict(state, records.ALGORITHM_STATE, self.device)
        self.executor.optimizer_states = {} if optimizer is None else {self.client_id: optimizer}
        self.executor.algorithm_states = {} if algorithm is None else {self.client_id: algorithm}

    def save_states(self, state: RecordDict) -> None:
        if self.client_id in self.executor.optimizer_states:
            records.put_dict(state, records.OPTIMIZER_STATE, self.executor.optimizer_states[self.client_id])
        if self.client_id in self.executor.algorithm_states:
            records.put_dict(state, records.ALGORITHM_STATE, self.executor.algorithm_states[self.client_id])

    def describe(self, want_summary: bool) -> RecordDict:
        """Which client this node is and, if asked, its ``client_summary`` of its whole local data."""
        reply = RecordDict({records.NODE: ConfigRecord({"partition-id": self.client_id})})
        if want_summary:
            summary = self.algorithm.client_summary(self.client_id, self.data.x, self.data.y)
            records.put_dict(reply, records.SUMMARY, summary)
        return reply


def client_app(cfg: RunConfig, data: Sequence[TensorData], num_classes: int) -> ClientApp:
    """A ClientApp running ``cfg``'s algorithm on the node whose partition id indexes ``data`` (every
    client's own training data, as ``client_data`` gives; under Ray each worker gets a copy of it)."""
    wiring.check_supported(cfg)
    app = ClientApp()

    def node(context: Context) -> Node:
        client_id = int(context.node_config["partition-id"])
        return Node(cfg, data[client_id], num_classes, client_id)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        this = node(context)
        sent_to = int(msg.content[records.ROUND_INFO]["client-id"])
        if sent_to != this.client_id:
            raise RuntimeError(f"node of client {this.client_id} got client {sent_to}'s training message")
        return Message(this.train(msg, context.state), reply_to=msg)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return Message(node(context).describe(bool(msg.content[records.NODE]["want-summary"])), reply_to=msg)

    return app

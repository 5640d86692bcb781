"""Local training of a round's clients together: stacked parameters, one vmapped step per minibatch.

On a GPU, one small client model at a time leaves the device mostly idle; stacking the round's clients
(K rows of flat parameters and optimizer state) turns K small forward/backward passes into one batched
pass (``torch.func`` runs convolutions over stacked weights as grouped convolutions). On our CPUs the
plain loop is faster (see ``python -m benchmarks perf --executor all``), so ``auto`` picks this executor
only on CUDA.

It computes what the sequential executor computes, client by client:
- each client's minibatches come from ``client_batches`` with the same seeded generator, so the order
  of samples is identical;
- the objective is the algorithm's own ``local_loss(model, batch, ctx)``, run under ``functional_call``
  so that everything it does with ``model`` (forward, ``features``/``head``, ``parameters()``) sees the
  client's row of parameters;
- the optimizer repeats ``FlatOptimizer``'s arithmetic with a step count per row, because persistent Adam
  states of different clients have taken different numbers of steps;
- at step s only the clients whose s-th batch has the same length share a call (one call per distinct
  length: full batches, each short last batch of an epoch); a client with no batch of that length at
  step s is masked out of the call, so its parameters and optimizer state do not change.

- the algorithm's per-client state is stacked like the optimizer state, each client's row reaching its
  objective as ``ctx.state``; ``finish_client`` then runs client by client on the unstacked rows.

An objective that cannot run under vmap (``.item()``, random draws, data-dependent control flow, a
per-client context field) raises inside the vmapped call; the round is then trained again by the
sequential executor, which keeps doing so for the rest of the run, and the reason is printed once on
stderr and recorded in summary.json. Only errors that name vmap's limits (or ``PerClientField``,
``NotImplementedError``) trigger the fallback: any other error is a bug and propagates. Nothing
persistent is written before a vectorised round completes, so the retry starts clean.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from benchmarks.engine.api import Batch, ClientUpdate, LocalResult, TensorData
from benchmarks.engine.executors.sequential import SequentialExecutor, client_batches, finish_client
from benchmarks.engine.flat import FlatOptimizer, unflatten
from benchmarks.core.seeding import derive_seed


class PerClientField(RuntimeError):
    """Raised when a vmapped objective reads a context field that differs between its clients."""


# Words in the errors torch.func raises for what vmap cannot batch (.item(), data-dependent control
# flow, random draws under randomness="error", ops without a batching rule).
VMAP_LIMIT_WORDS = ("vmap", "batching rule", "functorch", "torch.func")


def is_vmap_limit(exc: BaseException) -> bool:
    """Whether ``exc`` says the objective cannot run under vmap (as opposed to a bug in it)."""
    if isinstance(exc, (PerClientField, NotImplementedError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(word in text for word in VMAP_LIMIT_WORDS)


class SharedContext:
    """The ``LocalContext`` of a vmapped step: its round, step and global model are common to all the
    clients in the call, their ids and random streams are not, so reading those raises (and the executor
    falls back to training clients one by one)."""

    def __init__(self, rnd: int, step: int, global_flat: torch.Tensor, global_params: list[torch.Tensor],
                 config: dict, state: dict):
        self.round, self.step = rnd, step
        self.global_flat, self.global_params = global_flat, global_params
        self.config, self.state = config, state

    @property
    def client_id(self) -> int:
        raise PerClientField("local_loss reads ctx.client_id, which differs between the clients of one call")

    @property
    def generator(self) -> torch.Generator:
        raise PerClientField("local_loss reads ctx.generator; a client's own random stream cannot be drawn "
                             "from inside vmap")


class _Bound(nn.Module):
    """Owns the working model, so that ``functional_call`` swaps a client's parameters in for the whole of
    ``local_loss`` (not only for ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, objective, x: torch.Tensor, y: torch.Tensor, state: dict) -> torch.Tensor:
        return objective(self.model, x, y, state)


class StackedOptimizer:
    """``FlatOptimizer``'s update on (G, P) rows of parameters and state, one step count per row.

    Per-row scalars (Adam's bias corrections, SGD's first-step flag) are computed on the host in Python
    floats exactly as ``FlatOptimizer`` does, for a whole round at once (see :meth:`scalars`).
    """

    def __init__(self, flat: FlatOptimizer):
        self.flat = flat

    def state_keys(self) -> tuple[str, ...]:
        if self.flat.kind == "adam":
            return ("exp_avg", "exp_avg_sq")
        return ("momentum_buffer",) if self.flat.momentum else ()

    def scalars(self, steps: list[int]) -> list[list[float]]:
        """One row of scalars per client from its step count after this step."""
        if self.flat.kind == "adam":
            beta1, beta2 = self.flat.betas
            return [[math.sqrt(1 - beta2 ** s), -self.flat.lr / (1 - beta1 ** s)] for s in steps]
        return [[float(s == 1)] for s in steps]

    @torch.no_grad()
    def step(self, params: torch.Tensor, grads: torch.Tensor, state: dict[str, torch.Tensor],
             scalars: torch.Tensor) -> None:
        opt = self.flat
        if opt.weight_decay:
            grads = grads.add(params, alpha=opt.weight_decay)
        if opt.kind == "sgd":
            if opt.momentum:
                buf = state["momentum_buffer"]
                first = scalars[:, :1].bool()
                buf.copy_(torch.where(first, grads, buf.mul(opt.momentum).add_(grads)))
                grads = buf
            params.add_(grads, alpha=-opt.lr)
            return
        beta1, beta2 = opt.betas
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grads, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / scalars[:, 0:1]).add_(opt.eps)
        params.add_(exp_avg.mul(scalars[:, 1:2]).div_(denom))


@dataclass
class Group:
    """The clients (rows) that take their ``step``-th minibatch together, all of one ``length``."""
    step: int
    length: int
    rows: torch.Tensor
    samples: torch.Tensor
    scalars: torch.Tensor


def plan_round(batches: list[list[torch.Tensor]], start_steps: list[int], optimizer: StackedOptimizer,
               device: torch.device) -> list[Group]:
    """Group each step's clients by batch length; all index and scalar tensors of the round reach the
    device in one transfer each (a transfer per step would synchronise the GPU every step)."""
    layout: list[tuple[int, int, list[int]]] = []
    rows, samples, scalars = [], [], []
    for step in range(max((len(b) for b in batches), default=0)):
        by_length: dict[int, list[int]] = {}
        for row, client in enumerate(batches):
            if step < len(client):
                by_length.setdefault(len(client[step]), []).append(row)
        for length, members in sorted(by_length.items(), reverse=True):
            layout.append((step, length, members))
            rows.extend(members)
            samples.extend(batches[row][step] for row in members)
            scalars.extend(optimizer.scalars([start_steps[row] + step + 1 for row in members]))
    if not layout:
        return []
    rows_dev = torch.tensor(rows, dtype=torch.long).to(device)
    samples_dev = torch.cat(samples).to(device)
    scalars_dev = torch.tensor(scalars, dtype=torch.float32).to(device)
    counts = [len(members) for _, _, members in layout]
    sample_counts = [len(members) * length for _, length, members in layout]
    return [Group(step, length, r, s, c) for (step, length, _), r, s, c in
            zip(layout, rows_dev.split(counts), samples_dev.split(sample_counts), scalars_dev.split(counts))]


class VectorisedExecutor:
    """Trains a round's clients together on stacked parameters (see the module docstring)."""

    name = "vectorised"

    def __init__(self, model: nn.Module, train: TensorData, client_indices: list[torch.Tensor],
                 client_cfg, num_classes: int, seed: int):
        self.sequential = SequentialExecutor(model, train, client_indices, client_cfg, num_classes, seed)
        self.bound = _Bound(model)
        self.names = [name for name, _ in self.bound.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.sizes = [p.numel() for p in model.parameters()]
        self.optimizer = StackedOptimizer(self.sequential.optimizer)
        self.fallback: str | None = None
        self.fallback_round: int | None = None

    def describe(self) -> dict:
        """The executor that really trained the clients: sequential from the fallback round on, if any."""
        if self.fallback is None:
            return {"executor": self.name, "executor_fallback": None}
        return {"executor": "sequential",
                "executor_fallback": f"sequential from round {self.fallback_round} on (vmap cannot run its "
                                     f"objective: {self.fallback})"}

    @property
    def client_states(self) -> dict:
        """Shared with the sequential executor (same format), so checkpoints and a fallback see one store."""
        return self.sequential.client_states

    @client_states.setter
    def client_states(self, states: dict) -> None:
        self.sequential.client_states = states

    @property
    def optimizer_states(self) -> dict[int, dict]:
        return self.sequential.optimizer_states

    @property
    def algorithm_states(self) -> dict[int, dict]:
        return self.sequential.algorithm_states

    def train_round(self, rnd: int, client_ids: list[int], global_flat: torch.Tensor, algorithm,
                    config: dict | None = None) -> list[ClientUpdate]:
        config = config or {}
        if self.fallback is None:
            try:
                trained = self.train_together(rnd, client_ids, global_flat, algorithm, config)
            except (RuntimeError, NotImplementedError) as exc:
                if not is_vmap_limit(exc):
                    raise
                self.fallback = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.fallback_round = rnd
                print(f"vectorised executor: {type(algorithm).__name__}.local_loss cannot be trained under vmap "
                      f"({self.fallback}); training clients sequentially from round {rnd} on", file=sys.stderr)
            else:
                # Outside the fallback's reach: the round trained, and from here its stores are written.
                return self.finish(rnd, client_ids, *trained, global_flat, algorithm, config)
        return self.sequential.train_round(rnd, client_ids, global_flat, algorithm, config)

    def fallback_state(self) -> dict:
        """For checkpoints: a resumed run keeps training sequentially from where it fell back."""
        return {"reason": self.fallback, "round": self.fallback_round} if self.fallback else {}

    def restore_fallback(self, state: dict) -> None:
        if state:
            self.fallback, self.fallback_round = state["reason"], state["round"]

    def use_data(self, train: TensorData, client_indices: list[torch.Tensor]) -> None:
        """Train clients on ``train`` at ``client_indices`` from now on (read through the sequential executor)."""
        self.sequential.use_data(train, client_indices)

    def train_together(self, rnd: int, client_ids: list[int], global_flat: torch.Tensor, algorithm,
                       config: dict) -> tuple:
        """The round's vmapped training; nothing persistent is written here, so a fallback retries cleanly.
        Returns what ``finish`` needs after ``rnd`` and ``client_ids``."""
        batches = [self.client_batches(rnd, cid) for cid in client_ids]
        states = [self.start_state(cid, global_flat) for cid in client_ids]
        plan = plan_round(batches, [s["step"] for s in states], self.optimizer, global_flat.device)
        params = global_flat.detach().expand(len(client_ids), -1).clone()
        stacked = {key: torch.stack([s[key] for s in states]) for key in self.optimizer.state_keys()}
        algo_stacked = self.stack_algorithm_states(client_ids, global_flat, algorithm)
        losses = torch.zeros(len(client_ids), max((len(b) for b in batches), default=0), device=params.device)
        self.run_plan(rnd, plan, params, stacked, algo_stacked, losses, global_flat, algorithm, config)
        return batches, states, plan, params, stacked, algo_stacked, losses

    def stack_algorithm_states(self, client_ids: list[int], global_flat: torch.Tensor,
                               algorithm) -> dict[str, torch.Tensor]:
        """The round's algorithm client states as (K, ...) tensors; every client must hold the same keys
        and shapes (an algorithm's state is one layout for all clients)."""
        states = [self.sequential.algorithm_state(cid, global_flat, algorithm) for cid in client_ids]
        keys = sorted(states[0]) if states else []
        if any(sorted(s) != keys for s in states):
            raise ValueError(f"{type(algorithm).__name__}.init_client_state: every client's state must have "
                             f"the same keys")
        return {key: torch.stack([s[key] for s in states]) for key in keys}

    def run_plan(self, rnd: int, plan: list[Group], params: torch.Tensor, stacked: dict[str, torch.Tensor],
                 algo_stacked: dict[str, torch.Tensor], losses: torch.Tensor, global_flat: torch.Tensor,
                 algorithm, config: dict) -> None:
        """Step every group of the plan: gather its rows, one vmapped gradient, the optimizer, scatter back."""
        train = self.sequential.train
        global_params = unflatten(global_flat, self.sequential.params)
        self.sequential.model.train()
        for group in plan:
            rows = params.index_select(0, group.rows)
            x = train.x[group.samples].view(len(group.rows), group.length, *train.x.shape[1:])
            y = train.y[group.samples].view(len(group.rows), group.length)
            state_rows = {key: value.index_select(0, group.rows) for key, value in algo_stacked.items()}
            step = self.vmapped_step(algorithm, rnd, group.step, global_flat, global_params, config)
            grads, loss = step(rows, x, y, state_rows)
            row_state = {key: value.index_select(0, group.rows) for key, value in stacked.items()}
            self.optimizer.step(rows, grads, row_state, group.scalars)
            correction = algorithm.step_correction(config, state_rows)  # (P,) - (G, P) broadcasts per client
            if correction is not None:
                rows.sub_(correction, alpha=self.optimizer.flat.lr)
            params.index_copy_(0, group.rows, rows)
            for key, value in row_state.items():
                stacked[key].index_copy_(0, group.rows, value)
            losses[group.rows, group.step] = loss.detach()

    def finish(self, rnd: int, client_ids: list[int], batches: list[list[torch.Tensor]], states: list[dict],
               plan: list[Group], params: torch.Tensor, stacked: dict[str, torch.Tensor],
               algo_stacked: dict[str, torch.Tensor], losses: torch.Tensor, global_flat: torch.Tensor,
               algorithm, config: dict) -> list[ClientUpdate]:
        """Unstack the round into ``ClientUpdate``s and persisted states, both as the sequential executor
        makes them (the mean loss is summed in Python floats, step by step, as it does)."""
        seq = self.sequential
        label_counts = self.label_counts(plan, len(client_ids))
        loss_rows = losses.cpu().tolist()
        updates = []
        for row, (cid, client) in enumerate(zip(client_ids, batches)):
            if seq.cfg.persistent_state:
                seq.optimizer_states[cid] = dict(states[row], step=states[row]["step"] + len(client),
                                                 **{key: value[row].clone() for key, value in stacked.items()})
            trained = params[row].clone()
            num_samples = len(seq.client_indices[cid])
            result = LocalResult(rnd, cid, global_flat, trained, len(client), num_samples, config,
                                 {key: value[row].clone() for key, value in algo_stacked.items()})
            payload = finish_client(algorithm, seq.algorithm_states, result)
            updates.append(ClientUpdate(client_id=cid, params=trained, num_samples=num_samples, steps=len(client),
                                        samples_seen=sum(len(b) for b in client), label_counts=label_counts[row],
                                        train_loss=sum(loss_rows[row][:len(client)]) / max(1, len(client)),
                                        payload=payload))
        return updates

    def client_batches(self, rnd: int, client_id: int) -> list[torch.Tensor]:
        """The same batches as the sequential executor: same generator, same seed."""
        cfg = self.sequential.cfg
        generator = torch.Generator(device="cpu")
        generator.manual_seed(derive_seed(self.sequential.seed, "client", rnd, client_id))
        return client_batches(self.sequential.client_indices[client_id], cfg.batch_size, cfg.local_epochs,
                              cfg.local_steps, generator)

    def start_state(self, client_id: int, global_flat: torch.Tensor) -> dict:
        """The client's persisted optimizer state, or a fresh one (not stored until the round succeeds)."""
        seq = self.sequential
        if seq.cfg.persistent_state and client_id in seq.optimizer_states:
            return seq.optimizer_states[client_id]
        return seq.optimizer.init_state(global_flat)

    def vmapped_step(self, algorithm, rnd: int, step: int, global_flat: torch.Tensor,
                     global_params: list[torch.Tensor], config: dict):
        """(G, P) parameter rows, (G, L, ...) inputs, (G, L) labels, (G, ...) state rows -> (G, P) gradients,
        (G,) losses."""
        def objective(model, x, y, state):
            ctx = SharedContext(rnd, step, global_flat, global_params, config, state)
            return algorithm.local_loss(model, Batch(x, y), ctx)

        def loss_of(flat, x, y, state):
            views = {name: part.view(shape) for name, part, shape in zip(self.names, flat.split(self.sizes),
                                                                          self.shapes)}
            return functional_call(self.bound, views, (objective, x, y, state))

        return vmap(grad_and_value(loss_of), randomness="error")

    def label_counts(self, plan: list[Group], n_rows: int) -> list[torch.Tensor]:
        """Per client, the labels of the samples it trained on: one bincount over the whole round."""
        num_classes = self.sequential.num_classes
        if not plan:
            return list(torch.zeros(n_rows, num_classes, dtype=torch.int64).unbind(0))
        y = self.sequential.train.y
        keys = torch.cat([g.rows.repeat_interleave(g.length) * num_classes + y[g.samples] for g in plan])
        counts = torch.bincount(keys, minlength=n_rows * num_classes).view(n_rows, num_classes).cpu()
        return list(counts.unbind(0))

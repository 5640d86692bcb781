"""The one federated loop every algorithm runs in.

Per round: the algorithm's ``before_round`` hook -> seeded client sampling -> ``client_config`` ->
local training by the executor (``init_client_state``, ``local_loss``, ``finish_client`` per client)
-> ``aggregate`` -> ``after_aggregate`` -> evaluation on the validation split and the test set. Client sampling has its own random stream, so for a given seed every algorithm sees the same
clients in the same rounds. Deterministic numbers go to rounds.csv, wall and CPU seconds to timings.csv.
A run checkpoints every ``checkpoint_every`` rounds and resumes from its last checkpoint when started
again after an interruption. A caller with a time limit (the GPU check) gives ``run`` a deadline: the run
stops after the first whole round that ends past it, checkpointed, and raises ``RunStopped``.
"""
from __future__ import annotations

from datetime import datetime, timezone

import copy
import math
from dataclasses import replace
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.core.seeding import derive_seed
from benchmarks.engine.api import ServerContext, evaluate
from benchmarks.engine.clock import Elapsed, Stopwatch
from benchmarks.engine.checkpoint import (CHECKPOINT_NAME, load_checkpoint, restore_sampler, sampler_state,
                                          save_checkpoint, tensors_to)
from benchmarks.engine.executors import make_executor
from benchmarks.engine.extra_data import reserve_of, with_extra_data
from benchmarks.engine.federation import build_federation
from benchmarks.engine.flat import bind_flat
from benchmarks.engine.kernels import KernelMismatch, check_kernels, pinned, running_kernels
from benchmarks.models import build_model
from benchmarks.engine.provenance import versions
from benchmarks.engine.registry import get_algorithm
from benchmarks.engine.settings import RunConfig, paper_deviations
from benchmarks.store.rundir import RunDirectory, git_revision, results_root
from benchmarks.store.schema import ROUNDS_FILE, read_long_csv


def sample_clients(rng: np.random.Generator, n_clients: int, per_round: int) -> list[int]:
    return sorted(int(c) for c in rng.choice(n_clients, size=per_round, replace=False))


def open_round(rnd: int, cfg: RunConfig, server, algorithm, sampler: np.random.Generator, global_model,
               global_flat, one_off=None) -> list[int]:
    """Every driver's (this runner's, the Flower strategy's) opening of a round, in one order: fresh server
    timings and diagnostics, ``one_off`` work, the algorithm's ``before_round``, then the seeded draw of
    the round's clients, which it returns. The drivers ask for ``client_config`` next."""
    server.timings.clear()
    server.diagnostics.clear()
    if one_off is not None:
        one_off()
    algorithm.before_round(rnd, global_model, global_flat)
    return sample_clients(sampler, cfg.partition.clients, cfg.clients_per_round)


def round_train_metrics(updates, drift: float) -> dict[str, float]:
    """The round's ``train`` rows of rounds.csv, in their order (the Flower adapter reports the same)."""
    return {"loss": sum(u.train_loss for u in updates) / len(updates),
            "samples": sum(u.samples_seen for u in updates), "clients": len(updates), "drift": drift,
            "local_steps": sum(u.steps for u in updates) / len(updates)}


@torch.no_grad()
def client_drift(global_flat: torch.Tensor, updates) -> float:
    """Mean L2 distance of the clients' trained parameters from the round's global model: how far local
    training moved them (the drift FedProx and SCAFFOLD exist to limit)."""
    return float(torch.stack([(u.params - global_flat).norm() for u in updates]).mean())


def mechanism_summary(rows, algorithm) -> dict:
    """Each diagnostic series of rounds.csv (``train`` drift, local steps, loss and every ``server`` row)
    as first / last / mean, plus the algorithm's verdict on whether its mechanism engaged."""
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        if row.split == "server" or (row.split == "train" and row.metric in ("drift", "local_steps", "loss")):
            series.setdefault(f"{row.split}.{row.metric}", {})[row.round] = row.value
    stats = {key: {"first": values[min(values)], "last": values[max(values)],
                   "mean": sum(values.values()) / len(values)} for key, values in sorted(series.items())}
    return {"series": stats, **algorithm.mechanism(series)}


def deadline_clock() -> float:
    """The clock a deadline is read on (``time.monotonic``); tests replace it."""
    return time.monotonic()


class RunStopped(Exception):
    """A run reached its deadline before its last round. It stopped after a whole round: ``run_dir`` (the
    unfinished folder) holds rounds.csv and timings.csv up to ``rounds_done`` and, unless checkpoints are
    off (``checkpoint_every = 0``), a checkpoint there from which the same call without a deadline resumes."""

    def __init__(self, run_dir: Path, rounds_done: int, rounds: int):
        super().__init__(f"stopped at its deadline after {rounds_done} of {rounds} rounds ({run_dir})")
        self.run_dir, self.rounds_done, self.rounds = run_dir, rounds_done, rounds


def run(cfg: RunConfig, suite: str = "default", results: str | Path | None = None, data_dir=None,
        progress: bool = True, on_eval=None, deadline: float | None = None) -> Path:
    """Run ``cfg`` unless its result already exists; return the run directory.

    ``on_eval(rnd, metrics)`` is called after every evaluated round with that round's validation metrics
    only (tuners must never see the test set); an exception it raises abandons the run. ``deadline``, a
    ``time.monotonic()`` instant, stops the run after the first round that ends past it (``RunStopped``).
    """
    out = RunDirectory(results_root(results), suite, cfg.run_id())
    if out.is_complete():
        return out.final
    check_kernels(cfg)
    checkpoint = out.tmp / CHECKPOINT_NAME
    saved = load_checkpoint(checkpoint, cfg.run_hash()) if checkpoint.is_file() else None
    # Kernels cannot change inside a process, as threads can: a pinned run resumes only under its own.
    running = running_kernels()
    if saved and pinned(cfg) and saved.get("kernels", running) != running:
        raise KernelMismatch(f"cpu_kernels: {out.run_id} was checkpointed computing with {saved['kernels']}, this "
                             f"process computes with {running}; move {out.tmp} aside to start it again")
    # The thread count changes float rounding (not the experiment), so it is not hashed; a resumed run
    # keeps the count it started with, so that it still ends byte-identical to an uninterrupted one.
    threads = saved.get("threads", cfg.execution.threads) if saved else cfg.execution.threads
    if threads != cfg.execution.threads:
        print(f"resuming {out.run_id} with threads={threads}, as it started (threads={cfg.execution.threads} "
              "asked)", file=sys.stderr)
        cfg = replace(cfg, execution=replace(cfg.execution, threads=threads))
    torch.set_num_threads(threads)
    device = torch.device(cfg.device)
    fed = build_federation(cfg.dataset, cfg.partition, device, data_dir, eval_test=cfg.eval_test)
    loop = RoundLoop(cfg, fed, device, out, progress, on_eval)
    loop.deadline = deadline
    out.open(cfg.experiment_dict(), resume_bytes=saved["csv_bytes"] if saved else None)
    try:
        summary = loop.resume(saved) if saved else loop.start()
    except BaseException:
        out.abandon()
        raise
    out.flush()
    summary["mechanism"] = mechanism_summary(read_long_csv(out.tmp / ROUNDS_FILE), loop.algorithm)
    summary.update(run_id=out.run_id, suite=suite, config=cfg.experiment_dict(), seed=cfg.seed,
                   execution={**cfg.execution_dict(), **loop.executor.describe()},
                   algorithm_title=loop.algorithm.title, versions=versions(cfg.device),
                   git_revision=git_revision(), dataset=fed.describe(), partition=fed.stats,
                   paper_deviations=paper_deviations(cfg),
                   artifacts=loop.algorithm.write_artifacts(out.tmp),
                   finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return out.finish(summary)


def each_client_data(fed):
    """(client id, images, labels) of every client of ``fed``, in client order."""
    for cid, idx in enumerate(fed.client_indices):
        idx = idx.to(fed.train.x.device)
        yield cid, fed.train.x[idx], fed.train.y[idx]


class RoundLoop:
    """The state of one run between rounds, and the rounds themselves."""

    def __init__(self, cfg: RunConfig, fed, device, out: RunDirectory, progress: bool, on_eval):
        self.cfg, self.fed, self.out, self.progress, self.on_eval = cfg, fed, out, progress, on_eval

        def new_model():
            return build_model(cfg.model.name, fed.input_shape, fed.num_classes, cfg.model.width, cfg.model.depth)

        torch.manual_seed(derive_seed(cfg.seed, "model-init"))
        self.global_model = new_model().to(device)
        self.global_flat = bind_flat(self.global_model)
        self.executor = make_executor(cfg.executor, device, cfg.clients, cfg.compile, cfg.seed,
                                      copy.deepcopy(self.global_model), fed.train, fed.client_indices, fed.num_classes)
        self.server = ServerContext(aggregation=cfg.aggregation, clients=cfg.clients,
                                    eval_batch_size=cfg.eval_batch_size, rounds=cfg.rounds,
                                    num_classes=fed.num_classes, input_shape=fed.input_shape,
                                    device=device, val=fed.val, proxy=fed.proxy,
                                    client_class_counts=np.array(fed.stats["class_counts"]),
                                    build_model=new_model, seed=derive_seed(cfg.seed, "server", cfg.algorithm),
                                    mean=tuple(fed.dataset.mean), std=tuple(fed.dataset.std),
                                    class_names=tuple(fed.dataset.classes),
                                    reserve=reserve_of(fed.train, fed.client_indices, fed.val_positions,
                                                       fed.proxy_positions))
        self.algorithm = get_algorithm(cfg.algorithm)(cfg.hparams, self.server)
        if self.algorithm.shares_client_data:  # deterministic from the data, so redone on resume
            self.algorithm.receive_client_summaries([self.algorithm.client_summary(cid, x, y)
                                                     for cid, x, y in each_client_data(fed)])
        # Extra local data is added in the first round this process runs (after a resume's server state
        # is loaded, so an algorithm can restore what it made instead of making it again).
        self.data_extended = not self.algorithm.extends_client_data
        self.sampler = np.random.default_rng(derive_seed(cfg.seed, "client-sampling"))
        self.history: dict[int, dict[str, float]] = {}
        self.totals = {"round": 0.0, "client": 0.0, "server": 0.0, "samples": 0.0, "round_cpu": 0.0,
                       "client_cpu": 0.0}
        self.rounds_done = 0
        self.deadline: float | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict:
        self.evaluate_round(0)
        self.algorithm.setup(self.global_model, self.global_flat)
        return self.loop()

    def resume(self, saved: dict) -> dict:
        with torch.no_grad():
            self.global_flat.copy_(saved["global_flat"])
        self.executor.client_states = tensors_to(saved["client_states"], self.global_flat.device)
        self.executor.restore_fallback(saved["executor_fallback"])
        self.algorithm.load_server_state(tensors_to(saved["algorithm"], self.global_flat.device))
        restore_sampler(self.sampler, saved["sampler"])
        self.history = saved["history"]
        self.totals = saved["totals"]
        self.rounds_done = saved["round"]
        return self.loop()

    def checkpoint(self) -> None:
        csv_bytes = self.out.flush()
        save_checkpoint(self.out.tmp / CHECKPOINT_NAME, {
            "run_hash": self.cfg.run_hash(), "round": self.rounds_done, "global_flat": self.global_flat.cpu(),
            "client_states": self.executor.client_states, "algorithm": self.algorithm.server_state(),
            "sampler": sampler_state(self.sampler), "history": self.history, "totals": self.totals,
            "threads": self.cfg.execution.threads, "kernels": running_kernels(),
            "executor_fallback": self.executor.fallback_state(),
            "csv_bytes": csv_bytes})

    def extend_client_data(self) -> None:
        """Each client's ``extra_local_data`` appended to what the executor trains it on; the federation's
        own data and statistics stay as they were."""
        extras = [self.algorithm.extra_local_data(cid, x, y) for cid, x, y in each_client_data(self.fed)]
        self.executor.use_data(*with_extra_data(self.fed.train, self.fed.client_indices, extras))
        self.data_extended = True

    # ---- rounds -------------------------------------------------------------------------------
    def evaluate_round(self, rnd: int) -> Elapsed:
        watch = Stopwatch()
        for split, data in (("val", self.fed.val), ("test", self.fed.test)):
            if data is None or len(data) == 0:
                continue
            acc, loss = evaluate(self.global_model, data, self.cfg.eval_batch_size)
            self.history.setdefault(rnd, {})[f"{split}_accuracy"] = acc
            self.history[rnd][f"{split}_loss"] = loss
            self.out.add(rnd, split, "accuracy", acc)
            self.out.add(rnd, split, "loss", loss)
        seconds = watch.elapsed()
        if self.on_eval is not None:
            self.on_eval(rnd, {k: v for k, v in self.history.get(rnd, {}).items() if k.startswith("val_")})
        return seconds

    def loop(self) -> dict:
        cfg = self.cfg
        bar = _progress(cfg, self.progress, self.rounds_done)
        if bar is not None:
            self.server.show_status = bar.set_postfix_str
        diverged = None
        for rnd in range(self.rounds_done + 1, cfg.rounds + 1):
            diverged = self.one_round(rnd, bar)
            self.rounds_done = rnd
            if diverged is not None:
                break
            every = cfg.execution.checkpoint_every
            checkpointed = bool(every) and rnd % every == 0 and rnd < cfg.rounds
            if checkpointed:
                self.checkpoint()
            if self.deadline is not None and rnd < cfg.rounds and deadline_clock() >= self.deadline:
                if bar is not None:
                    bar.close()
                if every and not checkpointed:
                    self.checkpoint()
                else:
                    self.out.flush()
                raise RunStopped(self.out.tmp, rnd, cfg.rounds)
        if bar is not None:
            bar.close()
        return _summary(self.history, self.totals, self.rounds_done, diverged)

    def one_round(self, rnd: int, bar) -> dict | None:
        cfg, out, server, algorithm = self.cfg, self.out, self.server, self.algorithm
        round_watch = Stopwatch()
        hook_watch = Stopwatch()
        # Extending the clients' data is one-off work, timed as this round's server time.
        clients = open_round(rnd, cfg, server, algorithm, self.sampler, self.global_model, self.global_flat,
                             one_off=None if self.data_extended else self.extend_client_data)
        server_time = hook_watch.elapsed()

        client_watch = Stopwatch()
        client_config = algorithm.client_config(rnd)
        updates = self.executor.train_round(rnd, clients, self.global_flat, algorithm, client_config)
        client_time = client_watch.elapsed()
        drift = client_drift(self.global_flat, updates)

        with torch.no_grad():
            self.global_flat.copy_(algorithm.aggregate(rnd, self.global_flat, updates))
        hook_watch = Stopwatch()
        algorithm.after_aggregate(rnd, self.global_model, self.global_flat, updates)
        server_time += hook_watch.elapsed()

        train = round_train_metrics(updates, drift)
        for metric, value in train.items():
            out.add(rnd, "train", metric, value)
        train_loss, samples = train["loss"], train["samples"]
        for metric, value in sorted(server.diagnostics.items()):
            out.add(rnd, "server", metric, value)

        diverged = None
        if not (math.isfinite(train_loss) and bool(torch.isfinite(self.global_flat).all())):
            diverged = {"round": rnd, "reason": "non-finite training loss or global weights"}
        eval_time = Elapsed()
        if diverged is None and (rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
            eval_time = self.evaluate_round(rnd)
        round_time = round_watch.elapsed()
        parts = [(f"server_{part}", elapsed) for part, elapsed in sorted(server.timings.items())]
        for name, elapsed in [("round", round_time), ("client", client_time), ("server", server_time),
                              ("eval", eval_time)] + parts:
            out.add_time(rnd, f"{name}_seconds", elapsed.wall)
            out.add_time(rnd, f"{name}_cpu_seconds", elapsed.cpu)
        self.totals["round"] += round_time.wall
        self.totals["client"] += client_time.wall
        self.totals["server"] += server_time.wall
        self.totals["samples"] += samples
        # A run resumed from a checkpoint written before the CPU clock existed has no CPU total.
        for name, elapsed in (("round_cpu", round_time), ("client_cpu", client_time)):
            if name in self.totals:
                self.totals[name] += elapsed.cpu
        if bar is not None:
            last = self.history.get(rnd, {}).get("test_accuracy")
            bar.set_postfix_str(f"acc={last:.4f} s/round={round_time.wall:.2f}" if last is not None
                                else f"s/round={round_time.wall:.2f}")
            bar.update(1)
        return diverged


def _summary(history: dict, totals: dict, rounds_done: int, diverged) -> dict:
    evaluated = sorted(history)
    last = evaluated[-1]
    final = {"round": last, **{k: history[last].get(k) for k in
                               ("test_accuracy", "test_loss", "val_accuracy", "val_loss")}}
    with_val = [r for r in evaluated if r > 0 and "val_accuracy" in history[r]]
    if with_val:
        best = max(with_val, key=lambda r: (history[r]["val_accuracy"], -r))
        best_val = {"round": best, "val_accuracy": history[best]["val_accuracy"],
                    "test_accuracy": history[best].get("test_accuracy")}
    else:
        best_val = None
    return {
        "status": "diverged" if diverged else "complete",
        "diverged": diverged,
        "rounds_done": rounds_done,
        "final": final,
        "best_val": best_val,
        "timing": {
            "total_seconds": totals["round"],
            "mean_round_seconds": totals["round"] / rounds_done,
            "mean_client_seconds": totals["client"] / rounds_done,
            "mean_server_seconds": totals["server"] / rounds_done,
            "client_samples_per_second": totals["samples"] / max(totals["client"], 1e-9),
            # CPU seconds: absent for a run resumed from a checkpoint older than the CPU clock
            **({"total_cpu_seconds": totals["round_cpu"], "mean_round_cpu_seconds": totals["round_cpu"] / rounds_done,
                "client_samples_per_cpu_second": totals["samples"] / max(totals["client_cpu"], 1e-9)}
               if "round_cpu" in totals else {}),
        },
    }


def _progress(cfg, enabled: bool, done: int):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.rounds, initial=done, desc=f"{cfg.algorithm} {cfg.dataset.name} a={cfg.partition.alpha:g}",
                unit="round", file=sys.stderr, leave=False, dynamic_ncols=True)

"""The one federated loop every algorithm runs in.

Per round: the algorithm's ``before_round`` hook -> seeded client sampling -> local training by the
executor -> ``aggregate`` -> ``after_aggregate`` -> evaluation on the validation split and the test
set. Client sampling has its own random stream, so for a given seed every algorithm sees the same
clients in the same rounds. Deterministic numbers go to rounds.csv, wall-clock to timings.csv.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from algorithms import get_algorithm
from benchmarks.api import ServerContext, evaluate
from benchmarks.config import RunConfig, paper_deviations
from benchmarks.executor import SequentialExecutor
from benchmarks.federation import build_federation
from benchmarks.flat import bind_flat
from benchmarks.models import build_model
from benchmarks.results import RunDirectory, git_revision, results_root, versions
from benchmarks.seeding import derive_seed


def sample_clients(rng: np.random.Generator, n_clients: int, per_round: int) -> list[int]:
    return sorted(int(c) for c in rng.choice(n_clients, size=per_round, replace=False))


def run(cfg: RunConfig, suite: str = "default", results: str | Path | None = None, data_dir=None,
        progress: bool = True, on_eval=None) -> Path:
    """Run ``cfg`` unless its result already exists; return the run directory.

    ``on_eval(rnd, metrics)`` is called after every evaluated round with that round's validation metrics
    only (tuners must never see the test set); an exception it raises abandons the run.
    """
    out = RunDirectory(results_root(results), suite, cfg.run_id())
    if out.is_complete():
        return out.final
    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    fed = build_federation(cfg, device, data_dir)

    def new_model():
        return build_model(cfg.model.name, fed.input_shape, fed.num_classes, cfg.model.width, cfg.model.depth)

    torch.manual_seed(derive_seed(cfg.seed, "model-init"))
    global_model = new_model().to(device)
    global_flat = bind_flat(global_model)
    executor = SequentialExecutor(copy.deepcopy(global_model), fed.train, fed.client_indices, cfg.clients,
                                  fed.num_classes, cfg.seed)
    server = ServerContext(config=cfg, num_classes=fed.num_classes, input_shape=fed.input_shape, device=device,
                           val=fed.val, proxy=fed.proxy, client_class_counts=np.array(fed.stats["class_counts"]),
                           build_model=new_model, seed=derive_seed(cfg.seed, "server", cfg.algorithm),
                           mean=fed.dataset.mean, std=fed.dataset.std)
    algorithm = get_algorithm(cfg.algorithm)(cfg.hparams, server)
    sampler = np.random.default_rng(derive_seed(cfg.seed, "client-sampling"))

    out.open(cfg.to_dict())
    server.artifact_dir = out.tmp
    try:
        summary = _loop(cfg, fed, global_model, global_flat, executor, algorithm, server, sampler, out, progress,
                        on_eval)
    except BaseException:
        out.abandon()
        raise
    summary.update(run_id=out.run_id, suite=suite, config=cfg.to_dict(), seed=cfg.seed, versions=versions(),
                   git_revision=git_revision(), dataset=fed.describe(), partition=fed.stats,
                   paper_deviations=paper_deviations(cfg),
                   artifacts=algorithm.write_artifacts(out.tmp))
    return out.finish(summary)


def _loop(cfg, fed, global_model, global_flat, executor, algorithm, server, sampler, out, progress,
          on_eval) -> dict:
    history: dict[int, dict[str, float]] = {}

    def evaluate_round(rnd: int) -> float:
        start = time.perf_counter()
        for split, data in (("val", fed.val), ("test", fed.test)):
            if data is None or len(data) == 0:
                continue
            acc, loss = evaluate(global_model, data, cfg.eval_batch_size)
            history.setdefault(rnd, {})[f"{split}_accuracy"] = acc
            history[rnd][f"{split}_loss"] = loss
            out.add(rnd, split, "accuracy", acc)
            out.add(rnd, split, "loss", loss)
        seconds = time.perf_counter() - start
        if on_eval is not None:
            on_eval(rnd, {k: v for k, v in history[rnd].items() if k.startswith("val_")})
        return seconds

    evaluate_round(0)
    algorithm.setup(global_model, global_flat)
    bar = _progress(cfg, progress)
    totals = {"round": 0.0, "client": 0.0, "server": 0.0, "samples": 0}
    diverged = None
    per_round = cfg.clients_per_round
    for rnd in range(1, cfg.rounds + 1):
        round_start = time.perf_counter()
        server.timings.clear()
        server.diagnostics.clear()
        hook_start = time.perf_counter()
        algorithm.before_round(rnd, global_model, global_flat)
        server_seconds = time.perf_counter() - hook_start

        clients = sample_clients(sampler, cfg.partition.clients, per_round)
        client_start = time.perf_counter()
        updates = executor.train_round(rnd, clients, global_flat, algorithm)
        client_seconds = time.perf_counter() - client_start

        with torch.no_grad():
            global_flat.copy_(algorithm.aggregate(rnd, global_flat, updates))
        hook_start = time.perf_counter()
        algorithm.after_aggregate(rnd, global_model, global_flat, updates)
        server_seconds += time.perf_counter() - hook_start

        train_loss = sum(u.train_loss for u in updates) / len(updates)
        samples = sum(u.samples_seen for u in updates)
        out.add(rnd, "train", "loss", train_loss)
        out.add(rnd, "train", "samples", samples)
        out.add(rnd, "train", "clients", len(updates))
        for metric, value in sorted(server.diagnostics.items()):
            out.add(rnd, "server", metric, value)

        if not (math.isfinite(train_loss) and bool(torch.isfinite(global_flat).all())):
            diverged = {"round": rnd, "reason": "non-finite training loss or global weights"}
        eval_seconds = 0.0
        if diverged is None and (rnd % cfg.eval_every == 0 or rnd == cfg.rounds):
            eval_seconds = evaluate_round(rnd)
        round_seconds = time.perf_counter() - round_start
        out.add_time(rnd, "round_seconds", round_seconds)
        out.add_time(rnd, "client_seconds", client_seconds)
        out.add_time(rnd, "server_seconds", server_seconds)
        out.add_time(rnd, "eval_seconds", eval_seconds)
        for part, seconds in sorted(server.timings.items()):
            out.add_time(rnd, f"server_{part}_seconds", seconds)
        out.flush()
        totals["round"] += round_seconds
        totals["client"] += client_seconds
        totals["server"] += server_seconds
        totals["samples"] += samples
        if bar is not None:
            last = history.get(rnd, {}).get("test_accuracy")
            bar.set_postfix_str(f"acc={last:.4f} s/round={round_seconds:.2f}" if last is not None
                                else f"s/round={round_seconds:.2f}")
            bar.update(1)
        if diverged is not None:
            break
    if bar is not None:
        bar.close()
    rounds_done = rnd
    return _summary(history, totals, rounds_done, diverged)


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
        "final": final,
        "best_val": best_val,
        "timing": {
            "total_seconds": totals["round"],
            "mean_round_seconds": totals["round"] / rounds_done,
            "mean_client_seconds": totals["client"] / rounds_done,
            "mean_server_seconds": totals["server"] / rounds_done,
            "client_samples_per_second": totals["samples"] / max(totals["client"], 1e-9),
        },
    }


def _progress(cfg, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.rounds, desc=f"{cfg.algorithm} {cfg.dataset.name} a={cfg.partition.alpha:g}",
                unit="round", file=sys.stderr, leave=False, dynamic_ncols=True)

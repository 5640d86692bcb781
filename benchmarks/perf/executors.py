"""Speed measurements (a benchmark, not a test): the runner's own timings against plain training.

The federated numbers come from real runs of the runner (its timings.csv), so what is measured is what
users run. "Plain" training is one model trained with torch.optim.Adam on the same number of samples at
the same batch size, drawn by index gathers from the same preloaded tensor: the ratio between the two
is the cost of the federated bookkeeping (parameter copies, per-client optimizer state, aggregation).
Each measurement names its executor and device, so the same table compares the sequential executor with
the vectorised one on the CPU and on a GPU.
"""
from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.experiments.config import config_from_dict
from benchmarks.engine.federation import build_federation
from benchmarks.models import build_model


# What a timed round looks like: `regime` is suite cpu_regime's (16 clients of ~712 images, 6 a round: a
# round costs seconds, so the default `perf` takes a couple of minutes); `paper` is the DynaFed paper's
# (80 clients of the whole training set, 32 a round).
SCALES = {"regime": ({"train_subset": 12000, "proxy_source": "unused"}, 16), "paper": ({}, 80)}


def perf_config(dataset_name: str, width: int, threads: int, rounds: int, scale: str = "regime", **extra) -> dict:
    dataset, clients = SCALES[scale]
    data = {
        "algorithm": "fedavg", "rounds": rounds, "eval_every": rounds, "threads": threads,
        "dataset": {"name": dataset_name, **dataset},
        "partition": {"scheme": "balanced_dirichlet", "alpha": 0.04, "clients": clients},
        "model": {"name": "convnet", "width": width, "depth": 3},
        "clients": {"participation": 0.4, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return data


def _timings(run_dir: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with open(run_dir / "timings.csv") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["metric"], []).append(float(row["value"]))
    return out


def _samples(run_dir: Path) -> list[float]:
    with open(run_dir / "rounds.csv") as fh:
        return [float(r["value"]) for r in csv.DictReader(fh) if r["split"] == "train" and r["metric"] == "samples"]


def plain_training_seconds(cfg, samples: int, data_dir=None) -> float:
    """Seconds to train one model on ``samples`` samples at the run's batch size (Adam, CE)."""
    torch.set_num_threads(cfg.execution.threads)
    device = torch.device(cfg.device)
    fed = build_federation(cfg.dataset, cfg.partition, device, data_dir)
    model = build_model(cfg.model.name, fed.input_shape, fed.num_classes, cfg.model.width,
                        cfg.model.depth).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.clients.lr)
    pool = torch.cat(fed.client_indices)
    gen = torch.Generator().manual_seed(0)
    bs = cfg.clients.batch_size
    steps = samples // bs
    order = pool[torch.randint(len(pool), (steps * bs,), generator=gen)].to(device)
    start = time.perf_counter()
    for i in range(steps):
        idx = order[i * bs:(i + 1) * bs]
        loss = F.cross_entropy(model(fed.train.x[idx]), fed.train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_round_vs_plain(dataset: str, width: int, threads: int, rounds: int, data_dir=None,
                           executor: str = "sequential", device: str = "cpu", scale: str = "regime") -> dict:
    """Mean timings of ``rounds`` rounds after a warm-up round, whose own seconds (one-off costs:
    allocator, kernel selection, vmap tracing) are reported apart as ``first_round_seconds``."""
    from benchmarks.engine.runner import run

    cfg = config_from_dict(perf_config(dataset, width, threads, rounds + 1, scale, executor=executor, device=device))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run(cfg, suite="perf", results=tmp, data_dir=data_dir, progress=False)
        timings, samples = _timings(run_dir), _samples(run_dir)
    client = timings["client_seconds"][1:]
    train_seconds = sum(client) / len(client)
    round_seconds = sum(timings["round_seconds"][1:]) / len(client)
    mean_samples = sum(samples[1:]) / len(client)
    plain = plain_training_seconds(cfg, int(mean_samples), data_dir)
    return {"first_round_seconds": timings["round_seconds"][0], "round_seconds": round_seconds,
            "train_seconds": train_seconds, "plain_seconds": plain, "ratio": train_seconds / plain,
            "samples_per_second": mean_samples / train_seconds, "eval_seconds": timings["eval_seconds"][-1]}


def compare_jobs(data_dir=None) -> list[str]:
    """Wall time of one small 4-run sweep: 1 job x 1 thread, 1 job x 2 threads, 2 jobs x 1 thread."""
    from benchmarks.experiments.suites import Suite
    from benchmarks.experiments.sweep import run_sweep

    lines = ["sweep of 4 runs (fmnist, width 32, 2 rounds, cpu_regime's 16 clients of ~712 images):"]
    for jobs, threads in ((1, 1), (1, 2), (2, 1)):
        cells = [config_from_dict(perf_config("fmnist", 32, threads, 2, seed=seed)) for seed in range(4)]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_sweep(Suite("perf-jobs", "", cells), jobs=jobs, results=tmp, data_dir=data_dir, progress=False)
            lines.append(f"  --jobs {jobs} threads={threads}: {time.perf_counter() - start:.1f} s")
    return lines

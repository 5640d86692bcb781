"""How long a suite will take on this machine, before it starts.

The estimate times the cell's own model here (a few training steps at the client batch size and one
evaluation batch, per distinct model x input shape) and multiplies by the work the config implies:
client steps, evaluations, and whatever an algorithm adds on the server (its ``estimate_extra_seconds``
hook, in units of those two measured costs). Finished runs are not counted, so the estimate of a
resumed sweep is what is left of it. With ``jobs`` processes the wall time is the larger of
(total / jobs) and the longest single run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.experiments.config import RunConfig
from benchmarks.data.datasets import DATASET_FACTS

# Process start, data load and partitioning, measured at 5-10 s per run here.
STARTUP_SECONDS = 8.0


@dataclass(frozen=True)
class StepCosts:
    """Seconds measured here for one model on one input shape."""
    train_sample: float    # forward + backward + Adam step, per sample, at the client batch size
    forward_sample: float  # inference, per sample, at the evaluation batch size


@dataclass(frozen=True)
class CellWork:
    """The amount of data one run touches, from its config alone."""
    clients_per_round: int
    client_samples_per_round: int  # samples the sampled clients train on in one round
    val_size: int
    proxy_size: int
    test_size: int
    num_classes: int


def cell_work(cfg: RunConfig) -> CellWork:
    facts = DATASET_FACTS[cfg.dataset.name]
    train = cfg.dataset.train_subset or facts.train_size
    val = round(cfg.dataset.val_fraction * train)
    if cfg.dataset.proxy_source == "train":
        proxy = round(cfg.dataset.proxy_fraction * train)
        pool = train - val - proxy
    elif cfg.dataset.proxy_source == "unused":
        proxy = round(cfg.dataset.proxy_fraction * facts.train_size)
        pool = train - val
    else:
        proxy = round(cfg.dataset.proxy_fraction * DATASET_FACTS[cfg.dataset.proxy_source].train_size)
        pool = train - val
    per_client = pool / cfg.partition.clients
    batch = cfg.clients.batch_size
    if cfg.clients.local_steps:
        samples = cfg.clients.local_steps * min(batch, per_client)
    else:
        samples = cfg.clients.local_epochs * per_client
    return CellWork(clients_per_round=cfg.clients_per_round,
                    client_samples_per_round=int(round(samples * cfg.clients_per_round)),
                    val_size=val, proxy_size=proxy, test_size=facts.test_size if cfg.eval_test else 0,
                    num_classes=facts.num_classes)


def _cost_key(cfg: RunConfig) -> tuple:
    return (cfg.dataset.name, cfg.model.name, cfg.model.width, cfg.model.depth, cfg.clients.batch_size,
            cfg.eval_batch_size, cfg.device, cfg.execution.threads)


def measure_costs(cfg: RunConfig, steps: int = 5) -> StepCosts:
    """Time the cell's model here on random data of the dataset's shape."""
    from benchmarks.models import build_model

    facts = DATASET_FACTS[cfg.dataset.name]
    device = torch.device(cfg.device)
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.execution.threads)
    try:
        gen = torch.Generator().manual_seed(0)
        model = build_model(cfg.model.name, facts.input_shape, facts.num_classes, cfg.model.width,
                            cfg.model.depth).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = cfg.clients.batch_size
        x = torch.randn((batch, *facts.input_shape), generator=gen).to(device)
        y = torch.randint(facts.num_classes, (batch,), generator=gen).to(device)

        def train_step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        train = _time(train_step, steps, device) / batch
        eval_batch = min(cfg.eval_batch_size, 1000)
        xe = torch.randn((eval_batch, *facts.input_shape), generator=gen).to(device)

        def forward():
            with torch.no_grad():
                model(xe)

        forward_time = _time(forward, 2, device) / eval_batch
    finally:
        torch.set_num_threads(previous)
    return StepCosts(train_sample=train, forward_sample=forward_time)


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def cell_seconds(cfg: RunConfig, costs: StepCosts) -> float:
    """Estimated wall seconds of one run, given the measured costs of its model."""
    from algorithms import get_algorithm

    work = cell_work(cfg)
    clients = cfg.rounds * work.client_samples_per_round * costs.train_sample
    evaluations = cfg.rounds // cfg.eval_every + (cfg.rounds % cfg.eval_every != 0)
    evaluation = evaluations * (work.val_size + work.test_size) * costs.forward_sample
    extra = get_algorithm(cfg.algorithm).estimate_extra_seconds(cfg, work, costs)
    return STARTUP_SECONDS + clients + evaluation + extra


@dataclass(frozen=True)
class Estimate:
    cells: int
    pending: int
    jobs: int
    seconds_by_run: dict[str, float]     # run_id -> estimated seconds, pending runs only
    seconds_by_algorithm: dict[str, float]
    costs: dict[tuple, StepCosts]

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds_by_run.values())

    @property
    def wall_seconds(self) -> float:
        longest = max(self.seconds_by_run.values(), default=0.0)
        return max(self.total_seconds / self.jobs, longest)


def estimate_suite(cells: list[RunConfig], pending: list[RunConfig], jobs: int) -> Estimate:
    costs: dict[tuple, StepCosts] = {}
    by_run, by_algorithm = {}, {}
    for cfg in pending:
        key = _cost_key(cfg)
        if key not in costs:
            costs[key] = measure_costs(cfg)
        seconds = cell_seconds(cfg, costs[key])
        by_run[cfg.run_id()] = seconds
        by_algorithm[cfg.algorithm] = by_algorithm.get(cfg.algorithm, 0.0) + seconds
    return Estimate(cells=len(cells), pending=len(pending), jobs=jobs, seconds_by_run=by_run,
                    seconds_by_algorithm=by_algorithm, costs=costs)


def format_duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{max(minutes, 1)} min" if seconds >= 30 else f"{seconds:.0f} s"


def describe(suite_name: str, est: Estimate) -> str:
    lines = [f"estimate for suite {suite_name}: {est.pending} of {est.cells} runs left, --jobs {est.jobs}"]
    for (dataset, model, width, depth, batch, _, device, threads), c in est.costs.items():
        lines.append(f"  measured here: {model}-{width} on {dataset} ({device}, {threads} thread"
                     f"{'s' if threads > 1 else ''}): {c.train_sample * 1e3:.2f} ms per training sample "
                     f"at batch {batch}, {c.forward_sample * 1e3:.3f} ms per evaluated sample")
    if est.pending:
        parts = ", ".join(f"{name} {format_duration(s)}" for name, s in sorted(est.seconds_by_algorithm.items()))
        lines.append(f"  run time by algorithm (summed over runs): {parts}")
        lines.append(f"  estimated wall time: {format_duration(est.wall_seconds)} "
                     f"(longest run {format_duration(max(est.seconds_by_run.values()))})")
    return "\n".join(lines)


def estimate_for(suite, results: Path, jobs: int) -> Estimate:
    from benchmarks.experiments.sweep import pending_cells
    return estimate_suite(suite.cells, pending_cells(suite, results), jobs)

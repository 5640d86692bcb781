"""A hetbench run config through Flower's simulation: one virtual node per client.

``simulate`` splits a federation into what the server holds (``ServerData``: validation split and
proxy) and what each node holds (its client's training images), builds the ServerApp and ClientApp,
and runs them with ``flwr.simulation.run_simulation`` (Ray actors run the client apps). Flower's
``Result`` (final arrays, validation metrics, training metrics) is on the returned strategy.
"""
from __future__ import annotations

import os
import sys

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from benchmarks.engine.federation import Federation, build_federation
from benchmarks.engine.kernels import check_kernels
from benchmarks.engine.settings import RunConfig
from benchmarks.experiments.ray_cells import import_ray, start_local_ray
from benchmarks.flower.client import client_app, client_data
from benchmarks.flower.strategy import AlgorithmStrategy
from benchmarks.flower.wiring import ServerData


def server_app(strategy: AlgorithmStrategy, timeout: float = 3600) -> ServerApp:
    """A ServerApp that runs ``strategy`` for its configured rounds, scoring on the validation split."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy.start(grid, timeout=timeout, evaluate_fn=strategy.evaluate_validation)

    return app


def start_ray_for_flower(init_args: dict | None = None) -> None:
    """Start the local cluster Flower's simulation would start (with the backend config's ``init_args``;
    its actors import this package through PYTHONPATH, as Flower's Ray backend arranges), with
    ``start_local_ray``'s retries: a cluster whose raylet died at startup left Flower waiting forever.
    Flower shuts it down when the simulation ends."""
    if import_ray().is_initialized():
        return
    path = os.pathsep.join([*sys.path, *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["PYTHONPATH"] = path
    start_local_ray(**{"runtime_env": {"env_vars": {"PYTHONPATH": path}}, **(init_args or {})})


def simulate(cfg: RunConfig, fed: Federation | None = None, data_dir=None,
             backend_config: dict | None = None) -> AlgorithmStrategy:
    """Run ``cfg`` under Flower's simulation and return the finished strategy (``strategy.result``).
    ``fed`` defaults to the federation ``cfg`` describes, built without its test set. Each node gets
    ``execution.threads`` CPUs and no GPU share unless ``backend_config`` says otherwise (for CUDA runs give
    the nodes a share, e.g. ``{"client_resources": {"num_cpus": 1, "num_gpus": 0.25}}``; not tested on a GPU)."""
    check_kernels(cfg)  # as the runner does (a local Ray started from here inherits this process's caps)
    torch.set_num_threads(cfg.execution.threads)  # as the runner does: threads change float rounding
    if fed is None:
        fed = build_federation(cfg.dataset, cfg.partition, torch.device(cfg.device), data_dir, eval_test=False)
    strategy = AlgorithmStrategy(cfg, ServerData.of(fed))
    backend = backend_config or {"client_resources": {"num_cpus": cfg.execution.threads, "num_gpus": 0.0}}
    start_ray_for_flower(backend.get("init_args"))
    run_simulation(server_app(strategy), client_app(cfg, client_data(fed), fed.num_classes),
                   num_supernodes=cfg.partition.clients, backend_config=backend)
    if strategy.result is None:
        raise RuntimeError("the Flower simulation ended before its ServerApp finished (see Flower's log)")
    return strategy

"""DynaFed under Flower's simulation, on tiny in-memory data: six Flower nodes, one per client.

    .venv/bin/python examples/flower_dynafed.py

The server (a Flower strategy running DynaFed's server hooks) holds the validation split and the proxy
images; each node (a Flower ClientApp running DynaFed's local objective) holds its client's training
images and keeps its Adam state in Flower's Context. The test set never leaves this script: the final
global model is scored on it here. Any registered algorithm runs the same way: change ``algorithm``
and its ``algorithms.<name>`` table. Most of the run time is Ray starting; the five rounds take seconds.
"""
from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # Flower reads it on import; set it to 1 to send usage events

import torch  # noqa: E402

from algorithms import get_algorithm  # noqa: E402
from benchmarks.engine.api import evaluate  # noqa: E402
from benchmarks.engine.federation import build_federation  # noqa: E402
from benchmarks.experiments.config import config_from_dict  # noqa: E402
from benchmarks.flower import simulate  # noqa: E402

CONFIG = {
    "algorithm": "dynafed",
    "rounds": 5,
    "seed": 0,
    "dataset": {"name": "synthetic", "val_fraction": 0.1},
    "partition": {"scheme": "balanced_dirichlet", "alpha": 0.5, "clients": 6},
    "model": {"name": "convnet", "width": 8, "depth": 2},
    "clients": {"participation": 0.5, "batch_size": 16},
    # The tests' budget: a 4-snapshot trajectory, so synthesis runs at the start of round 4.
    "algorithms": {"dynafed": dict(get_algorithm("dynafed").tiny_budget)},
}


def main() -> None:
    cfg = config_from_dict(CONFIG, single_run=True)
    fed = build_federation(cfg.dataset, cfg.partition, torch.device(cfg.device))
    strategy = simulate(cfg, fed)  # the server side gets ServerData.of(fed): validation and proxy only
    result = strategy.result
    for rnd, metrics in sorted(result.evaluate_metrics_serverapp.items()):
        server = {k.removeprefix("server."): v for k, v in result.train_metrics_clientapp.get(rnd, {}).items()
                  if k.startswith("server.")}
        print(f"round {rnd}: validation accuracy {metrics['val.accuracy']:.3f}"
              + (f"  server: {', '.join(f'{k}={v:.3g}' for k, v in sorted(server.items()))}" if server else ""))
    accuracy, _ = evaluate(strategy.global_model, fed.test, cfg.eval_batch_size)
    print(f"final test accuracy {accuracy:.3f} (chance {1 / fed.num_classes:.3f})")


if __name__ == "__main__":
    main()

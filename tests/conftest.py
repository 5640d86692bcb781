"""Shared fixtures: tiny runs on the built-in synthetic dataset, results in a temp folder."""
from __future__ import annotations

import copy
import os

import pytest
import torch

# One thread keeps the tests deterministic and avoids two torch pools fighting on 2 cores.
torch.set_num_threads(1)
os.environ.setdefault("HETBENCH_OFFLINE", "1")

TINY = {
    "algorithm": "fedavg",
    "rounds": 2,
    "seed": 0,
    "dataset": {"name": "synthetic", "val_fraction": 0.1, "proxy_fraction": 0.1},
    "partition": {"scheme": "balanced_dirichlet", "alpha": 0.5, "clients": 6},
    "model": {"name": "convnet", "width": 8, "depth": 2},
    "clients": {"participation": 0.5, "batch_size": 16},
}


def tiny_dict(**sections) -> dict:
    """The tiny config as a dict, with top-level keys or whole sections merged in."""
    data = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def wired(cfg):
    """The runner's own wiring of ``cfg`` (global model, executor, server context, algorithm) on the CPU,
    without a results folder, for tests that drive rounds by hand."""
    from benchmarks.engine.federation import build_federation
    from benchmarks.engine.runner import RoundLoop
    device = torch.device("cpu")
    return RoundLoop(cfg, build_federation(cfg.dataset, cfg.partition, device), device, out=None, progress=False, on_eval=None)


@pytest.fixture
def tiny():
    return tiny_dict


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    path = tmp_path / "results"
    monkeypatch.setenv("HETBENCH_RESULTS", str(path))
    return path

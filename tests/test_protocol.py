"""The client protocol, and that adding an algorithm is one module: a toy algorithm written to a
temporary folder is discovered by ``algorithms.discover()``, uses every hook (per-round client config
with a float and a tensor, per-client state, a payload, aggregation over payloads, server state), and
passes the same conformance checks as the shipped algorithms, a report naming it by its title."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

import algorithms
from benchmarks.engine import registry
from benchmarks.engine.runner import run
from benchmarks.experiments.config import config_from_dict
from conftest import wired
from reports.build import build_report
from test_conformance import (check_deterministic, check_resume_and_state, check_vectorised_equals_sequential,
                              conformance_config)

TOY = '''
"""A SCAFFOLD-shaped toy: each client keeps a correction vector, the server a shift; the local loss
pulls the parameters along (correction - shift); clients send back how their correction moved."""
from dataclasses import dataclass

import torch

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import register, setting


@dataclass(frozen=True)
class ToyParams:
    strength: float = setting(0.1, ge=0.0, doc="weight of the correction term")


@register("toy_payload", title="Toy payload")
class ToyPayload(FedAvg):
    Params = ToyParams

    def setup(self, global_model, global_flat):
        self.shift = torch.zeros_like(global_flat)

    def client_config(self, rnd):
        return {"strength": self.params.strength, "shift": self.shift}

    def init_client_state(self, client_id, global_flat):
        return {"correction": torch.zeros_like(global_flat), "rounds": torch.zeros(1)}

    def local_loss(self, model, batch, ctx):
        loss = super().local_loss(model, batch, ctx)
        flat_now = torch.cat([p.reshape(-1) for p in model.parameters()])
        return loss + ctx.config["strength"] * (flat_now * (ctx.state["correction"] - ctx.config["shift"])).sum()

    def finish_client(self, result):
        old = result.state["correction"]
        new = 0.5 * old + 0.5 * (result.start - result.params) / max(1, result.steps)
        result.state["correction"] = new
        result.state["rounds"] = result.state["rounds"] + 1
        return {"delta_correction": new - old}

    def aggregate(self, rnd, global_flat, updates):
        self.shift = self.shift + torch.stack([u.payload["delta_correction"] for u in updates]).mean(0)
        return super().aggregate(rnd, global_flat, updates)

    def server_state(self):
        return {"shift": self.shift}

    def load_server_state(self, state):
        self.shift = state["shift"]
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """``algorithms/toy_payload.py`` as a user would add it, discovered like the shipped modules."""
    folder = tmp_path / "more_algorithms"
    folder.mkdir()
    (folder / "toy_payload.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(algorithms, "__path__", [*algorithms.__path__, str(folder)])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    names = algorithms.discover()
    yield names
    sys.modules.pop("algorithms.toy_payload", None)


def test_a_new_module_is_registered_by_discovery_alone(toy):
    assert "toy_payload" in toy
    assert registry.get_algorithm("toy_payload").title == "Toy payload"


def test_toy_algorithm_passes_the_conformance_checks(toy, tiny, tmp_path):
    cfg = conformance_config(tiny, "toy_payload")
    check_deterministic(cfg, tmp_path / "det")
    check_resume_and_state(cfg, tmp_path / "resume")
    check_vectorised_equals_sequential(tiny, "toy_payload", tmp_path / "vec")


def test_client_state_persists_and_payload_reaches_aggregation(toy, tiny):
    loop = wired(config_from_dict(tiny(algorithm="toy_payload", rounds=3)))
    loop.algorithm.setup(loop.global_model, loop.global_flat)
    seen: dict[int, int] = {}
    for rnd in (1, 2, 3):
        clients = [0, 1, 2] if rnd < 3 else [0, 3, 4]
        updates = loop.executor.train_round(rnd, clients, loop.global_flat, loop.algorithm,
                                            loop.algorithm.client_config(rnd))
        assert all(set(u.payload) == {"delta_correction"} for u in updates)
        shift_before = loop.algorithm.shift.clone()
        with torch.no_grad():
            loop.global_flat.copy_(loop.algorithm.aggregate(rnd, loop.global_flat, updates))
        assert not torch.equal(loop.algorithm.shift, shift_before)
        for cid in clients:
            seen[cid] = seen.get(cid, 0) + 1
    states = loop.executor.algorithm_states
    assert {cid: int(states[cid]["rounds"].item()) for cid in states} == seen
    assert seen[0] == 3 and int(states[0]["correction"].abs().sum() > 0)


def test_vectorised_state_matches_sequential_state(toy, tiny):
    """On the FedAvg CNN: the ConvNet's conv biases (zero true gradient before instance norm) let Adam turn
    rounding noise into full steps, which would swamp the comparison (see test_vectorised.CASES)."""
    stores = {}
    for executor in ("sequential", "vectorised"):
        cnn = {"name": "cnn", "width": 8}
        loop = wired(config_from_dict(tiny(algorithm="toy_payload", executor=executor, model=cnn)))
        loop.algorithm.setup(loop.global_model, loop.global_flat)
        for rnd in (1, 2):
            loop.executor.train_round(rnd, [0, 1, 2], loop.global_flat, loop.algorithm,
                                      loop.algorithm.client_config(rnd))
        assert loop.executor.describe()["executor"] == executor  # no fallback: the objective vmaps
        stores[executor] = loop.executor.algorithm_states
    for cid, state in stores["sequential"].items():
        torch.testing.assert_close(stores["vectorised"][cid]["correction"], state["correction"], atol=1e-5, rtol=0)
        assert torch.equal(stores["vectorised"][cid]["rounds"], state["rounds"])


def test_report_names_the_new_algorithm_by_its_title(toy, tiny, tmp_path):
    cfg = config_from_dict(tiny(algorithm="toy_payload"))
    out = run(cfg, suite="toy", results=tmp_path / "results", progress=False)
    assert json.loads((out / "summary.json").read_text())["algorithm_title"] == "Toy payload"
    build_report("toy", tmp_path / "results", tmp_path / "report")
    assert "| Toy payload |" in (tmp_path / "report" / "main_table.md").read_text()

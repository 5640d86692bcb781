"""The ``extra_local_data`` hook (ReGL's synthetic images): a toy algorithm written to a temporary folder
adds labelled examples to some clients' data; they are trained on from round 1, made once per process
before the first round it runs, pass the conformance checks, and leave the federation and every client
without extras exactly as FedAvg has them."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import algorithms
from benchmarks.engine import registry
from benchmarks.engine.api import TensorData
from benchmarks.engine.runner import run
from benchmarks.experiments.config import config_from_dict
from conftest import wired
from test_conformance import (check_deterministic, check_resume_and_state, check_vectorised_equals_sequential,
                              conformance_config)

TOY = '''
"""Even clients add their first three images mirrored and labelled 9; odd clients add nothing; a setting
adds nothing anywhere."""
from dataclasses import dataclass

import torch

from algorithms.fedavg import FedAvg
from benchmarks.engine.api import register, setting, TensorData


@dataclass(frozen=True)
class ToyExtraParams:
    add: bool = setting(True, doc="whether even clients add examples")


@register("toy_extra", title="Toy extra data")
class ToyExtra(FedAvg):
    Params = ToyExtraParams
    extends_client_data = True
    calls = []  # (client id, images it holds), across instances: the tests read it

    def extra_local_data(self, client_id, x, y):
        type(self).calls.append((client_id, len(x)))
        if not self.params.add or client_id % 2:
            return None
        return TensorData(x[:3].flip(-1), torch.full((3,), 9, dtype=torch.long, device=y.device))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    folder = tmp_path / "more_algorithms"
    folder.mkdir()
    (folder / "toy_extra.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(algorithms, "__path__", [*algorithms.__path__, str(folder)])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    algorithms.discover()
    cls = registry.get_algorithm("toy_extra")
    cls.calls.clear()
    yield cls
    sys.modules.pop("algorithms.toy_extra", None)


def test_toy_algorithm_passes_the_conformance_checks(toy, tiny, tmp_path):
    cfg = conformance_config(tiny, "toy_extra")
    check_deterministic(cfg, tmp_path / "det")
    check_resume_and_state(cfg, tmp_path / "resume")
    check_vectorised_equals_sequential(tiny, "toy_extra", tmp_path / "vec")


def test_extras_are_made_once_per_process_for_every_client_and_trained_on(toy, tiny):
    loop = wired(config_from_dict(tiny(algorithm="toy_extra")))
    real = [len(idx) for idx in loop.fed.client_indices]
    assert toy.calls == [] and not loop.data_extended  # not at construction: a resume loads its state first
    loop.extend_client_data()
    assert toy.calls == [(cid, n) for cid, n in enumerate(real)]  # in client order, with its own data
    updates = loop.executor.train_round(3, [0, 1], loop.global_flat, loop.algorithm)
    assert [u.num_samples for u in updates] == [real[0] + 3, real[1]]
    assert int(updates[0].label_counts[9]) >= 3 and updates[0].samples_seen == real[0] + 3
    added = loop.executor.train.x[loop.executor.client_indices[0][-3:]]
    own = loop.fed.train.x[loop.fed.client_indices[0][:3].to(loop.fed.train.x.device)]
    assert torch.equal(added, own.flip(-1))
    assert loop.fed.describe()["n_client_pool"] == sum(real)  # the federation is untouched


def test_adding_nothing_changes_nothing(toy, tiny, tmp_path):
    """With every client adding nothing, the run is FedAvg's byte for byte: the executor's own copy of the
    clients' data keeps every client's images in order, so every batch is drawn as before."""
    runs = {}
    for name, extra in (("fedavg", {}), ("toy_extra", {"algorithms": {"toy_extra": {"add": False}}})):
        cfg = config_from_dict(tiny(algorithm=name, **extra))
        runs[name] = (run(cfg, suite="x", results=tmp_path / name, progress=False) / "rounds.csv").read_bytes()
    assert runs["toy_extra"] == runs["fedavg"]


def test_a_run_asks_once_and_algorithms_without_the_flag_are_never_asked(toy, tiny, tmp_path, monkeypatch):
    run(config_from_dict(tiny(algorithm="toy_extra", rounds=3)), suite="x", results=tmp_path / "toy", progress=False)
    assert [cid for cid, _ in toy.calls] == list(range(6))  # 3 rounds, one pass over the 6 clients
    from algorithms.fedavg import FedAvg

    def refuse(*args):
        raise AssertionError("extra_local_data called for an algorithm that does not extend client data")

    monkeypatch.setattr(FedAvg, "extra_local_data", refuse)
    run(config_from_dict(tiny(algorithm="fedavg")), suite="x", results=tmp_path / "fedavg", progress=False)
    assert wired(config_from_dict(tiny())).data_extended


def test_malformed_extras_are_refused_naming_the_client():
    from benchmarks.engine.extra_data import with_extra_data
    train = TensorData(torch.zeros(10, 1, 4, 4), torch.zeros(10, dtype=torch.long))
    indices = [torch.arange(0, 5), torch.arange(5, 10)]
    with pytest.raises(ValueError, match="client 1: images are"):
        with_extra_data(train, indices, [None, TensorData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))])
    with pytest.raises(ValueError, match="client 0: every extra image needs a label"):
        with_extra_data(train, indices, [TensorData(torch.zeros(2, 1, 4, 4)), None])

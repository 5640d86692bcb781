"""ReGL: which classes a client lacks and how many images it makes of them; the oracle draws only held-out
images (disjoint from clients, validation and FedDF's proxy slice); generation is seeded and made once;
images enter the dataset's space as its own do; the diagnostics and the mechanism verdict."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from algorithms.regl import images_to_make, ReGLOracle
from algorithms.regl_backends.base import to_dataset_space
from benchmarks.engine.api import ConfigError
from benchmarks.engine.runner import run
from benchmarks.experiments.config import config_from_dict
from conftest import wired

# 600 of the synthetic dataset's 1,200 training images for the federation, 120 (10%) of the rest as
# FedDF's unused proxy: 480 held out for the reserve.
SUBSET = {"name": "synthetic", "train_subset": 600, "val_fraction": 0.1, "proxy_fraction": 0.1,
          "proxy_source": "unused"}


def _loop(tiny, name="regl_oracle", **hparams):
    extra = {"algorithms": {name: hparams}} if hparams else {}
    return wired(config_from_dict(tiny(algorithm=name, dataset=SUBSET, **extra)))


def test_missing_and_minority_classes_are_topped_up_to_the_budget():
    counts = torch.tensor([40, 0, 3, 10, 7, 0, 20, 0, 0, 0])  # 80 images: mean 8 a class
    assert images_to_make(counts, 0.5, 0).tolist() == [0, 8, 5, 0, 0, 8, 0, 8, 8, 8]  # < 4 lacks; target 8
    assert images_to_make(counts, 1.0, 0).tolist() == [0, 8, 5, 0, 1, 8, 0, 8, 8, 8]  # 7 < 8 lacks too
    assert images_to_make(counts, 0.0, 0).tolist() == [0, 8, 0, 0, 0, 8, 0, 8, 8, 8]  # missing only
    assert images_to_make(counts, 0.5, 30).tolist() == [0, 30, 27, 0, 0, 30, 0, 30, 30, 30]
    assert images_to_make(torch.full((10,), 8), 0.5, 0).sum() == 0  # balanced: nothing lacks


def test_the_reserve_is_disjoint_from_clients_validation_and_the_proxy_slice(tiny):
    loop = _loop(tiny)
    fed, reserve = loop.fed, loop.server.reserve
    held = set(reserve.positions.tolist())
    used = set(torch.cat(fed.client_indices).tolist()) | set(fed.val_positions.tolist()) | set(fed.proxy_positions.tolist())
    assert len(fed.proxy_positions) == 120 and len(held) == 480 and not held & used
    assert held | used == set(range(len(fed.train)))
    assert torch.equal(reserve.y, fed.train.y[reserve.positions])
    # By pixels too: no validation or proxy image the server holds is among the reserve's images.
    pixels = reserve.images(torch.arange(len(reserve))).flatten(1)
    for split in (fed.val.x, fed.proxy.x):
        assert torch.cdist(split.flatten(1), pixels).min() > 0


def test_the_oracle_hands_out_reserve_images_of_the_asked_classes_seeded(tiny):
    loop = _loop(tiny)
    fed, gen = loop.fed, loop.algorithm.generator
    gen.prepare()
    counts = torch.tensor([0, 3, 0, 5, 0, 0, 0, 0, 0, 2])
    local = fed.train  # unused by the oracle
    made = gen.generate(counts, seed=7, local=local)
    assert torch.bincount(made.y, minlength=10).tolist() == counts.tolist()
    flat = fed.train.x.flatten(1)
    positions = [int(torch.nonzero((flat == img.flatten()).all(1))[0]) for img in made.x]
    assert set(positions) <= set(loop.server.reserve.positions.tolist()) and len(set(positions)) == 10
    assert fed.train.y[positions].tolist() == made.y.tolist()
    again, other = gen.generate(counts, seed=7, local=local), gen.generate(counts, seed=8, local=local)
    assert torch.equal(again.x, made.x) and not torch.equal(other.x, made.x)


def test_generation_is_once_per_client_timed_and_reaches_the_executor(tiny):
    loop = _loop(tiny, minority_fraction=1.0)
    loop.server.timings.clear()
    loop.extend_client_data()
    algo, executor = loop.algorithm, loop.executor
    assert set(loop.server.timings) == {"regl_prepare", "regl_generate"}
    sizes = [len(idx) for idx in loop.fed.client_indices]
    for cid, idx in enumerate(executor.client_indices):
        made = algo.made[cid]
        assert len(idx) == sizes[cid] + int(made.sum())
        assert torch.equal(torch.bincount(executor.train.y[idx], minlength=10),
                           algo.owned[cid] + made)  # real plus synthetic labels
        if cid in algo.synthetic:  # its synthetic images follow its real ones
            assert torch.equal(executor.train.x[idx[sizes[cid]:]], algo.synthetic[cid].x)
    assert loop.fed.describe()["n_client_pool"] == sum(sizes)  # the federation itself is untouched
    first = {cid: data.x.clone() for cid, data in algo.synthetic.items()}
    loop.extend_client_data()  # a second call (a resumed process) reuses the images
    assert all(torch.equal(algo.synthetic[cid].x, x) for cid, x in first.items())


def test_the_proxy_keeps_its_images_in_the_server_state_and_never_retrains_on_resume(tiny):
    loop = _loop(tiny, "regl_proxy", vae_steps=5)
    loop.extend_client_data()
    state = loop.algorithm.server_state()
    assert state["synthetic"] and loop.algorithm.prepared
    fresh = _loop(tiny, "regl_proxy", vae_steps=5)
    fresh.algorithm.load_server_state(state)
    fresh.extend_client_data()
    assert not fresh.algorithm.prepared  # restored, not remade
    assert torch.equal(fresh.executor.train.x, loop.executor.train.x)
    assert _loop(tiny).algorithm.server_state() == {}  # the oracle redraws instead


def test_proxy_images_are_seeded_per_client_and_in_the_dataset_space(tiny):
    loop = _loop(tiny, "regl_proxy", vae_steps=5)
    gen = loop.algorithm.generator
    gen.prepare()
    assert gen.train_images == len(loop.server.proxy) == 120  # FedDF's amount of server data, labelled
    counts = torch.tensor([2, 0, 0, 0, 0, 0, 0, 0, 0, 3])
    a, b = gen.generate(counts, 1, loop.fed.train), gen.generate(counts, 1, loop.fed.train)
    assert torch.equal(a.x, b.x) and a.x.shape == (5, 1, 16, 16) and a.y.tolist() == [0, 0, 9, 9, 9]
    assert not torch.equal(gen.generate(counts, 2, loop.fed.train).x, a.x)
    pixels = a.x * loop.server.std[0] + loop.server.mean[0]
    assert torch.allclose(pixels * 255, (pixels * 255).round(), atol=1e-3)  # 8-bit levels, as real images


def test_generated_pixels_enter_the_dataset_space_as_its_own_images():
    rgb = torch.zeros(2, 3, 64, 64)
    rgb[:, 0] = 1.0  # pure red: luma 0.299
    grey = to_dataset_space(rgb, (1, 28, 28), (0.5,), (0.25,))
    assert grey.shape == (2, 1, 28, 28)
    assert torch.allclose(grey, torch.full_like(grey, (round(0.299 * 255) / 255 - 0.5) / 0.25))
    colour = to_dataset_space(torch.full((1, 1, 8, 8), 0.5), (3, 32, 32), (0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
    assert colour.shape == (1, 3, 32, 32)
    assert torch.allclose(colour[0, :, 0, 0], torch.tensor([128 / 255 - 0.1, 128 / 255 - 0.2, 128 / 255 - 0.3]))


def test_a_run_logs_the_diagnostics_and_a_verdict(tiny, tmp_path):
    cfg = config_from_dict(tiny(algorithm="regl_oracle", dataset=SUBSET, rounds=2))
    out = run(cfg, suite="r", results=tmp_path, progress=False)
    rows = (out / "rounds.csv").read_text()
    for metric in ("regl_missing_classes", "regl_missing_filled", "regl_minority_filled", "regl_synthetic_share",
                   "regl_synthetic_accuracy"):
        assert f"1,server,{metric}," in rows and f"2,server,{metric}," in rows
    timings = (out / "timings.csv").read_text()
    assert "1,time,server_regl_generate_seconds" in timings and "2,time,server_regl_generate_seconds" not in timings
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm_title"] == "ReGL (oracle)"
    assert summary["mechanism"]["engaged"] is True and "missing classes" in summary["mechanism"]["evidence"]
    assert summary["dataset"]["n_client_pool"] == 540  # 600 less 60 for validation: synthetic images not counted


def test_the_verdict_says_not_engaged_when_nothing_was_added(tiny):
    algo = _loop(tiny).algorithm
    assert algo.mechanism({"server.regl_synthetic_share": {1: 0.0, 2: 0.0}})["engaged"] is False
    assert algo.mechanism({})["engaged"] is False
    verdict = algo.mechanism({"server.regl_synthetic_share": {1: 0.25}, "server.regl_missing_filled": {1: 2.0},
                              "server.regl_missing_classes": {1: 2.0}, "server.regl_minority_filled": {1: 1.0}})
    assert verdict["engaged"] is True and "25%" in verdict["evidence"]


def test_held_out_backends_need_a_training_subset_and_say_so(tiny):
    for name in ("regl_oracle", "regl_proxy"):
        with pytest.raises(ConfigError, match=r"^dataset\.train_subset: .*set train_subset > 0"):
            config_from_dict(tiny(algorithm=name))


def test_every_backend_has_its_own_title():
    from benchmarks.engine.api import get_algorithm
    titles = {get_algorithm(n).title for n in ("regl_oracle", "regl_proxy", "regl_diffusers")}
    assert titles == {"ReGL (oracle)", "ReGL (proxy)", "ReGL (diffusers)"}
    assert ReGLOracle.extends_client_data and not get_algorithm("fedavg").extends_client_data


def test_clients_lacking_nothing_add_nothing(tiny):
    """IID clients of 80 images hold every class at about its mean: with minority_fraction 0 none lacks."""
    loop = wired(config_from_dict(tiny(algorithm="regl_oracle", dataset=SUBSET, partition={"scheme": "iid"},
                                       algorithms={"regl_oracle": {"minority_fraction": 0.0}})))
    real = [len(idx) for idx in loop.fed.client_indices]
    loop.extend_client_data()
    lacking = [bool((np.bincount(loop.fed.train.y[idx].numpy(), minlength=10) == 0).any())
               for idx in loop.fed.client_indices]
    assert [len(idx) - n for idx, n in zip(loop.executor.client_indices, real)] == \
        [int(loop.algorithm.made[c].sum()) for c in range(len(real))]
    assert all(int(loop.algorithm.made[c].sum()) == 0 for c, lacks in enumerate(lacking) if not lacks)

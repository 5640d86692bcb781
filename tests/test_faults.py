"""Fault tolerance: resume after a kill, divergence, unwritable results, and hostile inputs."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from algorithms import algorithm_names, get_algorithm
from benchmarks.engine.checkpoint import CHECKPOINT_NAME, CheckpointError
from benchmarks.experiments.config import config_from_dict, override_tag
from benchmarks.store.rundir import ResultsError, RunDirectory
from benchmarks.engine.runner import run

REPO = Path(__file__).resolve().parents[1]

# Budgets small enough for seconds, yet every algorithm's server state is exercised (DynaFed
# synthesises at round 4, FedGen's generator trains every round, FedDF distils).
def _config(tiny, algorithm, **extra):
    cls = get_algorithm(algorithm)
    hparams = {"algorithms": {algorithm: dict(cls.tiny_budget)}} if cls.tiny_budget else {}
    return tiny(algorithm=algorithm, rounds=6, checkpoint_every=1, **hparams, **{**cls.tiny_settings, **extra})


class _Interrupt(Exception):
    pass


# An interrupted-then-resumed run of every algorithm: tests/test_conformance.py.


def _wait_for_round(rounds_csv: Path, target: int, proc, timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if rounds_csv.exists() and f"\n{target},train," in rounds_csv.read_text():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("algorithm", algorithm_names())
def test_sigkill_at_random_round_then_resume_is_byte_identical(tiny, tmp_path, algorithm):
    data = _config(tiny, algorithm)
    data["rounds"] = 12
    cfg = config_from_dict(data)
    straight = run(cfg, suite="k", results=tmp_path / "straight", progress=False)
    kill_round = random.Random(algorithm).randint(2, 9)
    env = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_RESULTS": str(tmp_path / "killed")}
    overrides = [f"{key}={json.dumps(value)}" for key, value in _flatten(cfg.to_dict())]
    cmd = [sys.executable, "-m", "benchmarks", "run", "--suite", "k", "--no-progress",
           *(f"--set={item}" for item in overrides)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    suite = f"k@{override_tag(overrides, [])}"  # a run made with --set files apart from suite k's own
    tmp = RunDirectory(tmp_path / "killed", suite, cfg.run_id()).tmp
    reached = _wait_for_round(tmp / "rounds.csv", kill_round, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "killed" / suite / cfg.run_id()).exists(), "the run finished before the kill"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed = Path(done.stdout.strip().splitlines()[-1].rsplit("results: ", 1)[1])
    assert resumed == tmp_path / "killed" / suite / cfg.run_id()
    assert (resumed / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()


def _flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        elif value is not None:
            yield f"{prefix}{key}", value


def test_divergence_stops_the_run_and_the_sweep_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("HETBENCH_RESULTS", str(tmp_path))
    suite = tmp_path / "div.toml"
    suite.write_text("""
[suite]
name = "div"
[base]
rounds = 4
[base.dataset]
name = "synthetic"
[base.partition]
clients = 4
[base.model]
width = 4
depth = 2
[base.clients]
optimizer = "sgd"
[axes]
"clients.lr" = [1e30, 0.01]
""")
    from benchmarks.experiments.suites import load_suite
    from benchmarks.experiments.sweep import run_sweep
    from benchmarks.store.schema import read_summary
    dirs = run_sweep(load_suite(str(suite)), progress=False)
    statuses = sorted(read_summary(d)["status"] for d in dirs)
    assert statuses == ["complete", "diverged"]
    diverged = next(read_summary(d) for d in dirs if read_summary(d)["status"] == "diverged")
    assert diverged["diverged"]["round"] >= 1 and "non-finite" in diverged["diverged"]["reason"]


def test_results_root_that_is_a_file_fails_with_one_clear_line(tiny, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError) as info:
        run(config_from_dict(tiny()), suite="t", results=blocker, progress=False)
    assert "cannot write under" in str(info.value) and "\n" not in str(info.value)
    assert blocker.read_text() == "not a folder"


class _FillingDisk:
    """A file handle whose writes fail with ENOSPC after a few lines, as on a disk that fills up."""

    def __init__(self, fh, allowed: int):
        self._fh, self._allowed = fh, allowed

    def write(self, text):
        self._allowed -= 1
        if self._allowed < 0:
            raise OSError(28, "No space left on device")
        return self._fh.write(text)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def test_full_disk_mid_run_fails_clearly_and_leaves_earlier_results_intact(tiny, tmp_path, monkeypatch):
    earlier = run(config_from_dict(tiny()), suite="t", results=tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    original_open = RunDirectory.open

    def open_on_filling_disk(self, config, resume_bytes=None):
        original_open(self, config, resume_bytes)
        self._rounds = _FillingDisk(self._rounds, allowed=12)

    monkeypatch.setattr(RunDirectory, "open", open_on_filling_disk)
    with pytest.raises(ResultsError) as info:
        run(config_from_dict(tiny(seed=1)), suite="t", results=tmp_path, progress=False)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert not (tmp_path / "t" / config_from_dict(tiny(seed=1)).run_id()).exists()


def _interrupted(tiny, tmp_path, **extra):
    cfg = config_from_dict(tiny(rounds=4, checkpoint_every=1, **extra))

    def stop(rnd, metrics):
        if rnd == 2:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run(cfg, suite="t", results=tmp_path, on_eval=stop, progress=False)
    return cfg, RunDirectory(tmp_path, "t", cfg.run_id()).tmp / CHECKPOINT_NAME


def test_checkpoint_from_another_config_is_refused(tiny, tmp_path):
    cfg, ckpt = _interrupted(tiny, tmp_path)
    other = config_from_dict(tiny(rounds=4, checkpoint_every=1, seed=7))
    other_tmp = RunDirectory(tmp_path, "t", other.run_id()).tmp
    other_tmp.mkdir(parents=True)
    (other_tmp / CHECKPOINT_NAME).write_bytes(ckpt.read_bytes())
    with pytest.raises(CheckpointError) as info:
        run(other, suite="t", results=tmp_path, progress=False)
    assert "written by another config" in str(info.value)


def test_tampered_checkpoint_cannot_execute_code(tiny, tmp_path):
    cfg, ckpt = _interrupted(tiny, tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(ckpt, "wb") as fh:
        pickle.dump({"format": 1, "run_hash": cfg.run_hash(), "x": Payload()}, fh)
    with pytest.raises(CheckpointError) as info:
        run(cfg, suite="t", results=tmp_path, progress=False)
    assert "not a plain-tensor checkpoint" in str(info.value)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_with_one_line(tiny, tmp_path):
    cfg, ckpt = _interrupted(tiny, tmp_path)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError) as info:
        run(cfg, suite="t", results=tmp_path, progress=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("args,needle", [
    (["--set", "partition.clients=100000"], "partition"),
    (["--set", "dataset.name=\"imagenet\""], "dataset.name: 'imagenet' is not one of"),
    (["--set", "algorithm=\"nope\""], "algorithm: 'nope' is not one of"),
    (["--set", "clients.participation=2"], "clients.participation: 2 must be <= 1"),
    (["--set", "partition.alpha=-0.5"], "partition.alpha: -0.5 must be > 0"),
    (["--set", "rounds=1.5"], "rounds: 1.5 must be an integer"),
    (["--set", "nonsense"], "--set: 'nonsense' must look like key=value"),
])
def test_hostile_cli_input_one_line_exit_2_and_no_results_touched(tmp_path, args, needle):
    results = tmp_path / "res"
    (results / "keep").mkdir(parents=True)
    (results / "keep" / "file.txt").write_text("precious")
    env = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_RESULTS": str(results)}
    base = ["--set", "dataset.name=\"synthetic\"", "--set", "rounds=1", "--set", "model.width=4",
            "--set", "model.depth=2", "--set", "partition.clients=4"]
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--no-progress", *base, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert sorted(p.name for p in results.iterdir()) == ["keep"]
    assert (results / "keep" / "file.txt").read_text() == "precious"

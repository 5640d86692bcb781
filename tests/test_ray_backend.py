"""``hetbench sweep --backend ray``: cells as Ray tasks on a local 2-CPU cluster write the same folders and
bytes as the local backend; a run whose Ray worker is killed after a checkpoint is resumed by Ray's rerun of
the task, and after its task is cancelled (Ctrl-C) the next sweep resumes it to the bytes of an
uninterrupted run; missing ray is one line; the local backend never imports ray; cells no node can hold
are refused before anything is submitted.

Starting a local Ray cluster takes ~20 s on this loaded 2-core machine, so the file starts two."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.cli.main import main
from benchmarks.core.typed import ConfigError
from benchmarks.engine.runner import run
from benchmarks.experiments.cells import only
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.ray_cells import RayOptions, check_fits, check_reachable, run_on_ray
from benchmarks.experiments.suites import load_suite
from benchmarks.experiments.sweep import run_sweep
from benchmarks.store.claims import CLAIM_FILE
from benchmarks.store.rundir import RunDirectory

REPO = Path(__file__).resolve().parents[1]
# FedAvg, FedProx and SCAFFOLD (client variates), both alphas: the whole smoke suite takes 40-80 s a backend on
# this loaded 2-core machine, these three cells a few seconds (every algorithm's resume is in test_conformance).
SMOKE_CELLS = [0, 3, 5]
ENV = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_OFFLINE": "1"}


def _tree(root: Path) -> dict[str, bytes]:
    """Every deterministic file of every run under ``root``: rounds.csv and config.json, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for name in ("rounds.csv", "config.json")
            for p in sorted(root.rglob(name))}


@pytest.mark.slow
def test_ray_cells_write_the_same_folders_and_bytes_as_the_local_backend(tmp_path, capsys):
    suite = only(load_suite("smoke"), SMOKE_CELLS)
    local = run_sweep(suite, jobs=1, results=tmp_path / "local", progress=False)
    on_ray = run_sweep(suite, jobs=2, results=tmp_path / "ray", progress=False, ray_options=RayOptions())
    assert [p.relative_to(tmp_path / "ray") for p in on_ray] == [p.relative_to(tmp_path / "local") for p in local]
    assert all((p / "summary.json").is_file() for p in on_ray)
    expected = _tree(tmp_path / "local")
    assert len(expected) == 2 * len(SMOKE_CELLS)
    assert _tree(tmp_path / "ray") == expected
    assert not list((tmp_path / "ray" / "smoke").glob(".tmp-*"))
    # A second sweep finds every cell finished and submits nothing (no cluster is even started).
    before = {p: (p / "summary.json").stat().st_mtime_ns for p in on_ray}
    run_sweep(suite, jobs=2, results=tmp_path / "ray", progress=False, ray_options=RayOptions())
    assert {p: (p / "summary.json").stat().st_mtime_ns for p in on_ray} == before


MINI = """
[suite]
name = "mini"
[base]
rounds = 24
checkpoint_every = 1
[base.dataset]
name = "synthetic"
[base.partition]
clients = 6
[base.model]
width = 8
depth = 2
[base.clients]
participation = 0.5
batch_size = 16
"""


def _wait(predicate, proc, what: str, timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before {what}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def _claimant(tmp: Path) -> int | None:
    try:
        return json.loads((tmp / CLAIM_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _gone_soon(pid: int, timeout: float = 30.0) -> bool:
    """The process has exited (a zombie not yet reaped counts as exited)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _time_rows(path: Path, rnd: int) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(f"{rnd},time,")]


@pytest.mark.slow
def test_a_killed_ray_worker_then_a_cancelled_task_resume_to_the_same_bytes(tmp_path):
    suite_file = tmp_path / "mini.toml"
    suite_file.write_text(MINI)
    (cfg,) = load_suite(str(suite_file)).cells
    straight = run(cfg, suite="mini", results=tmp_path / "straight", progress=False)
    cmd = [sys.executable, "-m", "benchmarks", "sweep", str(suite_file), "--backend", "ray", "--jobs", "1",
           "--results", str(tmp_path / "ray"), "--no-progress"]
    out = RunDirectory(tmp_path / "ray", "mini", cfg.run_id())
    # The sweep must take Ctrl-C even when the tests run in the background, where the shell starts them with
    # SIGINT ignored and Python keeps an ignored SIGINT ignored (the sweep then exited 0, not 130).
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # The wait covers the cluster's start, which is retried when it does not come up (slow on busy cores).
        _wait(lambda: (out.tmp / "checkpoint.pt").is_file(), proc, "the first checkpoint", timeout=360.0)
        first_worker = _wait(lambda: _claimant(out.tmp), proc, "the worker's claim")
        round_one = _wait(lambda: _time_rows(out.tmp / "timings.csv", 1), proc, "round 1's timings")
        os.kill(first_worker, signal.SIGKILL)  # the Ray worker process, not the sweep: Ray reruns the task
        second_worker = _wait(lambda: (_claimant(out.tmp) or first_worker) != first_worker and _claimant(out.tmp),
                              proc, "Ray's rerun of the task to take the run over")
        _wait(lambda: _time_rows(out.tmp / "timings.csv", 3), proc, "the rerun to pass round 3")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the sweep cancels the task and stops the cluster
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert not out.is_complete(), "the run finished before it was cancelled; the test proves nothing"
    assert _gone_soon(second_worker), "the cancelled task's worker still runs"
    # The next sweep (the local backend: the same folders, and no second cluster to wait for) resumes it.
    run_sweep(load_suite(str(suite_file)), results=tmp_path / "ray", progress=False)
    assert (out.final / "rounds.csv").read_bytes() == (straight / "rounds.csv").read_bytes()
    # Resumed, not restarted: round 1's wall-clock rows are still the first worker's.
    assert _time_rows(out.final / "timings.csv", 1) == round_one


def test_missing_ray_is_one_line_naming_the_option(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    assert main(["sweep", "smoke", "--backend", "ray", "--cell", "0", "--results", str(tmp_path),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --backend ray: ray is not installed") and "\n" not in err
    assert not (tmp_path / "smoke").exists()


def test_the_local_backend_never_imports_ray(tmp_path):
    code = ("import sys; from benchmarks.cli.main import main; "
            f"rc = main(['sweep', 'smoke', '--cell', '0', '--results', {str(tmp_path)!r}, '--no-progress']); "
            "print(rc, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr[-2000:]


def test_cells_no_node_can_hold_are_refused_before_submitting():
    tiny = {"rounds": 1, "dataset": {"name": "synthetic"}, "partition": {"clients": 4},
            "model": {"width": 4, "depth": 2}}
    two_threads = config_from_dict({**tiny, "threads": 2})
    on_gpu = config_from_dict({**tiny, "device": "cuda"})
    nodes = [{"Alive": True, "Resources": {"CPU": 1.0}}, {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]
    with pytest.raises(ConfigError, match="threads: 2 CPUs per run, but the largest node of the Ray cluster has 1"):
        check_fits([two_threads], nodes, 1.0)
    with pytest.raises(ConfigError, match="device: 'cuda' needs 0.5 GPU per run"):
        check_fits([on_gpu], nodes, 0.5)
    check_fits([on_gpu], [{"Alive": True, "Resources": {"CPU": 1.0, "GPU": 1.0}}], 0.5)
    with pytest.raises(ConfigError, match="device: 'cuda:1' names a GPU"):
        next(run_on_ray([config_from_dict({**tiny, "device": "cuda:1"})], print, "s", "/r", None, 1, RayOptions()))
    with pytest.raises(ConfigError, match="--gpus-per-run: 1.5 must be > 0 and <= 1"):
        RayOptions(gpus_per_run=1.5)


def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.time()
    with pytest.raises(ConfigError, match=f"--address: nothing answers at 127.0.0.1:{port}") as info:
        check_reachable(f"127.0.0.1:{port}")
    assert time.time() - started < 5 and "\n" not in str(info.value)
    check_reachable("auto")  # not HOST:PORT: left to Ray, which finds a local cluster's address itself


class FlakyRay:
    """A stand-in for ``ray`` whose first starts fail as a busy machine's did: a raylet that timed out, then
    one that aborted (the cluster came up with no live node)."""

    def __init__(self, failures: list[str]):
        self.failures, self.inits, self.shutdowns, self.alive = list(failures), 0, 0, False

    def init(self, **kwargs):
        self.inits += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure == "timeout":
            raise Exception("The current node timed out during startup.")
        self.alive = failure != "dead raylet"

    def nodes(self):
        return [{"Alive": self.alive}]

    def shutdown(self):
        self.shutdowns += 1


def test_a_local_cluster_that_fails_to_start_is_started_again(monkeypatch):
    from benchmarks.experiments import ray_cells
    flaky = FlakyRay(["timeout", "dead raylet"])
    monkeypatch.setattr(ray_cells, "import_ray", lambda: flaky)
    ray_cells.start_local_ray(2)
    assert (flaky.inits, flaky.shutdowns, flaky.alive) == (3, 2, True)

    hopeless = FlakyRay(["dead raylet"] * 3)
    monkeypatch.setattr(ray_cells, "import_ray", lambda: hopeless)
    with pytest.raises(RuntimeError, match="without a live node"):
        ray_cells.start_local_ray(2)
    assert (hopeless.inits, hopeless.shutdowns) == (3, 3)

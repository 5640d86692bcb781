"""Shared tuning studies: two worker processes run one study on a journal file without running any trial
twice or overshooting the budget, and write the best.toml one worker writes for the same trials; a worker
killed mid-trial leaves a trial that the next worker fails and runs again with the same values; a stamp is
judged by the claims' rule (a dead PID on its own host, an old heartbeat anywhere); a worker that loses the
race for the last trial of the budget does not run it."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from benchmarks.experiments.study_storage import open_storage
from benchmarks.experiments.trial_liveness import RETRY_OF, WORKER, worker_gone
from benchmarks.experiments.tune import (FAIL_REASON, SURPLUS, StudyRequest, Surplus, admit, counts_towards_budget,
                                         prepare, tune)
from benchmarks.experiments.tune_pool import tune_with_workers
from benchmarks.store import claims

optuna.logging.set_verbosity(optuna.logging.ERROR)
REPO = Path(__file__).resolve().parents[1]
DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max: no such process here


def request(results: Path, journal: Path, **changes) -> StudyRequest:
    """FedProx on the smoke suite's synthetic data, two-round trials (about a second each here)."""
    fields = dict(algorithm="fedprox", dataset="synthetic", alpha=0.1, trials=4, base="smoke", rounds=2,
                  pruner="none", results=results, storage=f"journal:{journal}")
    return StudyRequest(**{**fields, **changes})


def _params(trial) -> tuple:
    return tuple(sorted(trial.params.items()))


@pytest.mark.slow
def test_two_workers_share_one_study_and_write_the_best_toml_one_worker_would(tmp_path):
    req = request(tmp_path / "shared", tmp_path / "study.journal", trials=6)
    outcome = tune_with_workers(req, workers=2, progress=False)
    trials = outcome.study.get_trials()
    counted = [t for t in trials if counts_towards_budget(t)]
    assert len(counted) == 6 and all(t.state == TrialState.COMPLETE for t in counted)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({_params(t) for t in counted}) == 6, "two workers ran the same values"
    assert len({t.user_attrs["run_id"] for t in counted}) == 6
    workers = {(t.user_attrs[WORKER]["host"], t.user_attrs[WORKER]["pid"]) for t in counted}
    assert len(workers) == 2 and os.getpid() not in {pid for _, pid in workers}, workers
    assert len(list((outcome.folder / "runs").iterdir())) == 6

    # One worker, given the same trials in the same order (surplus ones, if the race made any, as such).
    alone = request(tmp_path / "alone", tmp_path / "alone.journal", trials=6)
    study, _, _ = prepare(alone)
    for t in sorted(trials, key=lambda t: t.number):
        if counts_towards_budget(t):
            study.enqueue_trial(t.params)
        else:
            study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=t.user_attrs))
    single = tune(alone, progress=False)
    assert [(_params(t), t.value) for t in single.study.get_trials()] == [(_params(t), t.value) for t in trials]
    assert single.best_toml.read_bytes() == outcome.best_toml.read_bytes()


def _tune_cli(req: StudyRequest) -> list[str]:
    return [sys.executable, "-m", "benchmarks", "tune", "--algorithm", req.algorithm, "--dataset", req.dataset,
            "--alpha", str(req.alpha), "--trials", str(req.trials), "--base", req.base, "--rounds",
            str(req.rounds), "--pruner", req.pruner, "--storage", req.storage, "--results", str(req.results),
            "--no-progress"]


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_run_again_by_the_next_worker(tmp_path):
    journal = tmp_path / "study.journal"
    req = request(tmp_path / "a", journal, trials=3)
    env = {**os.environ, "HETBENCH_ALLOCATOR": "system", "HETBENCH_OFFLINE": "1"}
    proc = subprocess.Popen(_tune_cli(req), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = tmp_path / "a" / "tuning" / req.name / "runs"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(runs.glob(".tmp-*/rounds.csv")):  # its first trial's run is under way: kill the worker
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    (killed,) = optuna.load_study(study_name=req.name, storage=open_storage(req.storage)).get_trials()
    assert killed.state == TrialState.RUNNING and killed.user_attrs[WORKER]["pid"] == proc.pid
    assert set(killed.params) == {"clients.lr", "algorithms.fedprox.mu"}

    # The next worker (here, in this process) shares the journal and the results folder with the dead one.
    outcome = tune(req, progress=False)
    trials = outcome.study.get_trials()
    assert trials[0].state == TrialState.FAIL and not counts_towards_budget(trials[0])
    assert FAIL_REASON not in trials[0].user_attrs
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params and retries[0].user_attrs[WORKER]["pid"] == os.getpid()
    assert sum(counts_towards_budget(t) for t in trials) == 3 and len(trials) == 4
    with open(outcome.trials_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["fail_reason"] == f"interrupted; retried as trial {retries[0].number}"
    assert not list(runs.glob(".tmp-*")) and len(list(runs.iterdir())) == 3


def _trial_with_stamp(host: str, pid: int, age: float):
    return optuna.trial.create_trial(value=0.0, user_attrs={WORKER: {"host": host, "pid": pid,
                                                                    "heartbeat": time.time() - age}})


def test_a_stamp_goes_stale_by_the_claims_rule(monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "here")
    assert worker_gone(_trial_with_stamp("here", DEAD_PID, age=1))
    assert not worker_gone(_trial_with_stamp("here", os.getpid(), age=1))
    assert not worker_gone(_trial_with_stamp("there", DEAD_PID, age=1)), "another host's pid means nothing here"
    assert worker_gone(_trial_with_stamp("there", os.getpid(), age=claims.STALE_SECONDS + 1))


def test_workers_below_one_is_one_line(tmp_path, capsys):
    from benchmarks.cli.main import main
    assert main(["tune", "--algorithm", "fedprox", "--dataset", "synthetic", "--alpha", "0.1", "--base", "smoke",
                 "--workers", "0", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers: 0 must be >= 1"


def test_the_loser_of_a_race_for_the_last_trial_is_not_run():
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    first, second = study.ask(), study.ask()  # two workers each created a trial while one was left
    admit(first, budget=2)
    with pytest.raises(Surplus):
        admit(second, budget=2)
    study.tell(second, state=TrialState.FAIL)
    frozen = study.get_trials()[2]
    assert frozen.user_attrs[SURPLUS] and not counts_towards_budget(frozen)
    admit(study.ask(), budget=3)  # a queued or running earlier trial counts; a surplus one does not


def test_a_worker_joining_live_ones_with_another_trial_budget_is_one_line(tmp_path, monkeypatch):
    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.trial_liveness import stamp
    monkeypatch.setenv("HETBENCH_HOST", "here")
    journal = tmp_path / "study.journal"
    study, _, _ = prepare(request(tmp_path, journal, trials=4))
    running = study.ask()  # a live worker's trial: this process, freshly stamped
    running.set_user_attr(WORKER, stamp())
    with pytest.raises(ConfigError, match=r"^--trials: 6 differs from the 4 that the workers running study"):
        prepare(request(tmp_path, journal, trials=6))
    prepare(request(tmp_path, journal, trials=4))  # the same budget joins

    study.tell(running, state=TrialState.FAIL)
    again, _, _ = prepare(request(tmp_path, journal, trials=6))  # once they stop, a restart may change it
    assert again.user_attrs["trials"] == 6

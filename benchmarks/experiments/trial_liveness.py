"""Trials of a shared study whose worker died: noticed, failed once, and run again with the same values.

Every trial carries its worker's stamp (the ``worker`` user attribute: host, pid, heartbeat), refreshed by
a thread while the trial runs. A stamp goes stale by the rule of the run folders' claims
(``benchmarks.store.claims``): its heartbeat is older than ``STALE_SECONDS``, or, on the stamp's own host,
its PID is gone; a worker killed on this machine is therefore noticed at once, one on another machine
after ten minutes of silence. This works on any storage; a journal file has no heartbeat of its own, and a
database's (Optuna's) fails a trial only after its grace period.

Any worker may notice a dead one's trial; the storage lets only one of them finish it (a journal or a
database refuses to finish a trial twice), and only that worker queues the retry, so a killed trial is
retried once, by whichever worker asks for a trial next. A trial failed this way has no recorded reason,
so it does not use up the budget (``tune.counts_towards_budget``).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from benchmarks.store import claims

WORKER = "worker"
RETRY_OF = "retry_of"
ATTEMPT = "attempt"
# A trial that kills its worker every time (out of memory, say) is tried this often, then left failed.
MAX_ATTEMPTS = 3


def stamp() -> dict:
    return {"host": claims.host_name(), "pid": os.getpid(), "heartbeat": time.time()}


class Stamped:
    """``with Stamped(trial):`` the trial carries this worker's stamp, refreshed until the block ends."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Stamped:
        self.trial.set_user_attr(WORKER, stamp())
        self._thread = threading.Thread(target=self._beat, name="hetbench-trial-stamp", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(claims.HEARTBEAT_SECONDS):
            try:
                self.trial.set_user_attr(WORKER, stamp())
            except Exception:  # the trial was finished (by us, or failed by another worker): nothing to keep fresh
                return


def worker_gone(trial: FrozenTrial, now: float | None = None) -> bool:
    """Whether the worker of a RUNNING trial is dead, by its stamp (see the module's docstring)."""
    worker = trial.user_attrs.get(WORKER)
    if isinstance(worker, dict) and isinstance(worker.get("heartbeat"), (int, float)):
        return claims.is_stale(worker, Path(os.devnull), now)  # the path serves only stamps without a heartbeat
    # No stamp: killed between creating the trial and stamping it (or a worker of an older hetbench). Its
    # start time, in the local clock as storages return it, stands in for the heartbeat.
    started = trial.datetime_start
    now = time.time() if now is None else now
    return started is not None and now - started.timestamp() > claims.STALE_SECONDS


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s values again, marked as its retry; also the callback of a database's heartbeat."""
    attempt = trial.user_attrs.get(ATTEMPT, 1)
    if attempt >= MAX_ATTEMPTS:
        return
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.user_attrs.get(RETRY_OF, trial.number),
                                                  ATTEMPT: attempt + 1})


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail every RUNNING trial whose worker is gone and queue its retry; returns the failed trials' numbers."""
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_gone(trial):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            continue  # another worker (or the trial's own, after all) finished it first
        retry(study, trial)
        recovered.append(trial.number)
    return recovered

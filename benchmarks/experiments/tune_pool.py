"""One tuning study from several worker processes (``hetbench tune --workers N``).

The study is created (or reopened, its budget checked) here first, so a bad request fails once, before any
worker starts. Then N spawned processes each run ``tune`` on the same storage: Optuna hands out each trial
number and each queued retry once, ``tune.admit`` keeps the budget exact, and a worker that finds a dead
worker's trial runs it again (``trial_liveness``). When they are done this process writes ``best.toml``
and ``trials.csv``, as each worker did. Machines join the same study by running ``hetbench tune`` (with or
without ``--workers``) with one ``--storage``: a journal file on a shared file system, or a database.
"""
from __future__ import annotations

import multiprocessing
import sys

from benchmarks.core.typed import ConfigError
from benchmarks.experiments.tune import StudyOutcome, StudyRequest, prepare, run_trials, tune, write_outputs


def _worker(req: StudyRequest, data_dir, progress: bool, errors) -> None:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as the CLI does: our own line per trial instead
    try:
        tune(req, data_dir=data_dir, progress=progress)
    except Exception as exc:  # handed to the parent, which raises it as the command's own error
        errors.put(exc)


def tune_with_workers(req: StudyRequest, workers: int, data_dir=None, progress: bool = True) -> StudyOutcome:
    if workers < 1:
        raise ConfigError(f"--workers: {workers} must be >= 1")
    if workers == 1:
        return tune(req, data_dir=data_dir, progress=progress)
    prepare(req, data_dir)
    # Plain processes, not a pool: a pool stops every worker when one is killed; here the others go on.
    ctx = multiprocessing.get_context("spawn")  # no torch or storage state shared with the workers
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(req, data_dir, progress, errors), name=f"hetbench-tune-{i}")
             for i in range(workers)]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():  # interrupted: they got the same Ctrl-C; give them a moment to record it
                proc.join(timeout=10)
    if not errors.empty():
        raise errors.get()
    for proc in procs:
        if proc.exitcode:  # killed from outside (OOM, a signal): say so, then finish its share below
            print(f"tune: worker {proc.name} (pid {proc.pid}) ended with exit code {proc.exitcode}; "
                  "its trials are left to this process", file=sys.stderr)
    # A worker killed from outside leaves its trial to the others; if none was left to run it, run it here.
    study, objective, folder = prepare(req, data_dir)
    run_trials(study, objective, req.trials, [])
    return write_outputs(study, folder, req)

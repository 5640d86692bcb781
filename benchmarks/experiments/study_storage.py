"""Where a tuning study lives: an Optuna journal file, or a database.

``--storage journal:PATH`` (and the default, ``<results>/tuning/<study>.journal``) is Optuna's journal
storage: an append-only log that every worker appends to under a lock file, so worker processes on one
machine, or on several machines sharing a file system, run one study without a database server.
``--storage URL`` (``sqlite:///...``, ``postgresql://...``) is a database; there Optuna's own heartbeat
also fails the trials of dead workers. Studies made before the journal was the default live in
``<study>.db``, which stays their storage while it exists.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

from benchmarks.core.typed import ConfigError

JOURNAL = "journal:"
# Optuna's heartbeat on databases: a trial whose worker stopped beating for GRACE_SECONDS is failed.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180


def default_storage(tuning_dir: Path, name: str) -> str:
    legacy = tuning_dir / f"{name}.db"
    if legacy.is_file():
        return f"sqlite:///{legacy.resolve()}"
    return f"{JOURNAL}{(tuning_dir / f'{name}.journal').resolve()}"


def open_storage(spec: str, on_stale_trial: Callable | None = None) -> BaseStorage:
    """The storage ``spec`` names; ``on_stale_trial(study, trial)`` is called for each trial a database's
    heartbeat fails (a journal has no heartbeat of its own: ``trial_liveness`` covers both)."""
    try:
        if spec.startswith(JOURNAL):
            path = Path(spec[len(JOURNAL):]).expanduser()
            if not path.name:
                raise ValueError("no file name after journal:")
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(spec, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                                              heartbeat_stale_trial_callback=on_stale_trial)
    except Exception as exc:  # the database driver's and the file system's error types vary
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"--storage: cannot open {spec} ({type(exc).__name__}: {first})") from None

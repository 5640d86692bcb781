"""Optuna studies over an algorithm's declared hyperparameter ranges, scored on the validation split.

One study per (algorithm, dataset, alpha). The searched settings are whatever the algorithm's typed
hyperparameters declare with ``tune=SearchRange(...)``, plus the client settings that declare one (the
client learning rate), so a new algorithm is tunable without any change here. A key fixed with ``--set``
is left out of the search.

The objective is the validation accuracy of the trial's *final* round, not its best round: the pruner
compares trials round by round on the same curve, so a pruned trial is judged on the quantity that would
have been its value; a maximum over noisy rounds is biased upwards and favours unstable settings whose
curve spikes once; and the reports' main tables use the final round too. Trial runs never hold the test
set (``eval_test = false``), so nothing a study sees depends on it.

Every algorithm gets the same budget (trials, rounds, pruner), recorded in the study's user attributes;
reopening a study with a different budget is refused rather than silently mixing two searches. A
restarted study runs only the trials still missing from its budget; a restart may raise or lower the
trial count, but a worker may not join live workers with a different one.

Several processes share a study through its storage (``study_storage.py``: a journal file by default,
``--workers N`` in ``tune_pool.py``, or several machines on one journal or database). A trial is admitted
only while fewer than the budget of earlier-numbered trials count (queued and running ones included), so
racing workers never overshoot it; a trial whose worker died is failed and retried with the same values
(``trial_liveness.py``); every worker waits for the others' trials before it writes the outputs, so they
all write the same ``best.toml``, the one a single worker would write for the same trials.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import sys
import time
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)
from optuna.trial import FrozenTrial, TrialState

from algorithms import get_algorithm
from benchmarks.core import typed
from benchmarks.experiments.config import (EXECUTION_KEYS, ClientConfig, apply_overrides, config_from_dict, read_toml,
                                           set_dotted)
from benchmarks.data.datasets import DatasetError
from benchmarks.data.partition import PartitionError
from benchmarks.store.rundir import ResultsError, RunDirectory, results_root
from benchmarks.store.schema import read_summary
from benchmarks.engine.kernels import KernelMismatch, check_kernels
from benchmarks.engine.runner import run as run_config
from benchmarks.experiments.study_storage import default_storage, open_storage
from benchmarks.experiments.suites import suite_path
from benchmarks.experiments.trial_liveness import RETRY_OF, Stamped, recover_stale_trials, retry
from benchmarks.experiments.trial_sampler import NumberSeededTPE
from benchmarks.core.typed import ConfigError, SearchRange

OBJECTIVE = "final-round val_accuracy"
PRUNERS = ("median", "halving", "none")
RUNS = "runs"
FAIL_REASON = "fail_reason"
# A trial created by a worker that found the budget already used by earlier-numbered trials of others.
SURPLUS = "surplus"
# How often a worker whose own trials are done looks whether the others' are.
POLL_SECONDS = 2.0
# Errors no trial can escape (missing data, a partition the base cannot make): they stop the study
# instead of failing every trial.
ENVIRONMENT_ERRORS = (DatasetError, PartitionError, ResultsError, KernelMismatch)
# Differences in these between the stored study and a new request would mix two searches in one study.
BUDGET_KEYS = ("objective", "rounds", "pruner", "seed", "search_space", "config")


class TrialFailed(Exception):
    """A trial whose configuration failed (diverged, raised): recorded with its reason, the study goes on."""


class Surplus(TrialFailed):
    """A trial beyond the budget, created by a worker that raced others for the last one: not run."""


@dataclass(frozen=True)
class StudyRequest:
    algorithm: str
    dataset: str
    alpha: float
    trials: int
    base: str = "quick"
    rounds: int | None = None
    storage: str | None = None
    study: str | None = None
    pruner: str | optuna.pruners.BasePruner = "median"
    overrides: tuple[str, ...] = ()
    seed: int = 0
    results: str | Path | None = None

    @property
    def name(self) -> str:
        name = self.study or f"{self.algorithm}_{self.dataset}_a{self.alpha:g}_{Path(self.base).stem}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"--study: {name!r} may hold only letters, digits, '_', '.' and '-'")
        return name


@dataclass(frozen=True)
class StudyOutcome:
    study: optuna.Study
    folder: Path
    trials_csv: Path
    best_toml: Path | None
    best: FrozenTrial | None = None


def search_space(algorithm: str, fixed: typing.Collection[str] = ()) -> dict[str, BaseDistribution]:
    """Dotted config key -> distribution: the client settings every algorithm shares, then the algorithm's
    own declared ranges; keys in ``fixed`` are not searched."""
    space = {}
    for prefix, cls in (("clients", ClientConfig), (f"algorithms.{algorithm}", get_algorithm(algorithm).Params)):
        hints = typing.get_type_hints(cls)
        for field, rng in typed.search_space(cls).items():
            key = f"{prefix}.{field}"
            if key not in fixed:
                space[key] = _distribution(key, rng, hints[field])
    return space


def _distribution(key: str, rng: SearchRange, hint) -> BaseDistribution:
    if rng.choices is not None:
        return CategoricalDistribution(list(rng.choices))
    kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    if kinds == [int]:
        return IntDistribution(int(rng.low), int(rng.high), log=rng.log)
    if kinds == [float]:
        return FloatDistribution(float(rng.low), float(rng.high), log=rng.log)
    raise ConfigError(f"{key}: a tuning range needs an int or float setting, or choices")


def _suggest(trial: optuna.Trial, key: str, dist: BaseDistribution):
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, log=dist.log)


def base_config(req: StudyRequest) -> dict:
    """The ``[base]`` of the suite with the study's algorithm, dataset, alpha and rounds, the test set off
    and validation scored every round, then ``--set``; validated here so a bad request fails before any
    trial."""
    data = apply_overrides(read_toml(suite_path(req.base)).get("base", {}), [])
    data["algorithm"] = req.algorithm
    set_dotted(data, "dataset.name", req.dataset)
    set_dotted(data, "partition.alpha", req.alpha)
    if req.rounds is not None:
        data["rounds"] = req.rounds
    data["eval_test"] = False
    # Validation alone costs little, so trials score it every round: the pruner then sees every round,
    # even on a base suite that evaluates only at its end (quick scores the test set at round 10 only).
    data["eval_every"] = 1
    data = apply_overrides(data, list(req.overrides))
    cfg = config_from_dict(data)
    if cfg.eval_test:
        raise ConfigError("eval_test: a tuning study never reads the test set; drop --set eval_test=true")
    if cfg.dataset.val_fraction == 0:
        raise ConfigError("dataset.val_fraction: 0 leaves no validation split to score trials on")
    return data


def make_pruner(name: str, rounds: int) -> tuple[optuna.pruners.BasePruner, str]:
    """The named pruner scaled to the round budget, and the description recorded with the study.

    Median waits a quarter of the rounds: early rounds under strong heterogeneity are too noisy to rank.
    """
    if name == "median":
        warmup = max(1, rounds // 4)
        return (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup),
                f"median(n_startup_trials=5, n_warmup_steps={warmup})")
    if name == "halving":
        first = max(1, rounds // 10)
        return (optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3),
                f"halving(min_resource={first}, reduction_factor=3)")
    if name == "none":
        return optuna.pruners.NopPruner(), "none"
    raise ConfigError(f"--pruner: {name!r} is not one of {', '.join(PRUNERS)}")


def counts_towards_budget(trial: FrozenTrial) -> bool:
    """A trial that reached an outcome of its own (or runs in some worker) uses up the budget; one cut off
    by an interruption or a dead worker has no recorded reason and does not, so a restart runs it again,
    nor does a surplus trial that never ran."""
    if trial.state == TrialState.FAIL:
        return FAIL_REASON in trial.user_attrs and not trial.user_attrs.get(SURPLUS)
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def admit(trial: optuna.Trial, budget: int) -> None:
    """Run ``trial`` only if fewer than ``budget`` earlier-numbered trials count (queued retries included).
    Numbers are handed out in order and an earlier trial can only stop counting, never start, so two
    workers racing for the last trial cannot both be admitted; the later one is recorded as surplus."""
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    if sum(counts_towards_budget(t) or t.state == TrialState.WAITING for t in earlier) >= budget:
        trial.set_user_attr(SURPLUS, True)
        trial.set_user_attr(FAIL_REASON, "not run: other workers' trials used up the budget")
        raise Surplus("not run: other workers' trials used up the budget")


class Objective:
    """Runs one trial's config under ``<folder>/runs/``, reporting each round's validation accuracy to
    the pruner; the run folder of a pruned or failed trial is removed, a finished one is kept."""

    def __init__(self, base: dict, space: dict[str, BaseDistribution], folder: Path, data_dir=None,
                 budget: int | None = None):
        self.base = base
        self.space = space
        self.folder = folder
        self.data_dir = data_dir
        self.budget = budget

    def __call__(self, trial: optuna.Trial) -> float:
        with Stamped(trial):  # lets other workers tell this trial's worker alive from dead
            if self.budget is not None:
                admit(trial, self.budget)
            return self._evaluate(trial)

    def _evaluate(self, trial: optuna.Trial) -> float:
        data = apply_overrides(self.base, [])
        for key, dist in self.space.items():
            set_dotted(data, key, _suggest(trial, key, dist))
        try:
            return self._score(self._run(trial, config_from_dict(data)))
        except (optuna.TrialPruned, *ENVIRONMENT_ERRORS):
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(FAIL_REASON, reason)
            raise TrialFailed(reason) from exc

    def _run(self, trial: optuna.Trial, cfg) -> Path:
        def report(rnd: int, metrics: dict) -> None:
            if rnd == 0:
                return  # every trial starts from the same initial model: nothing to rank yet
            acc = metrics["val_accuracy"]
            if not math.isfinite(acc):
                raise TrialFailed(f"validation accuracy {acc} at round {rnd}")
            trial.report(acc, rnd)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at round {rnd} (val_accuracy {acc:.4f})")

        trial.set_user_attr("run_id", cfg.run_id())
        tmp = RunDirectory(self.folder, RUNS, cfg.run_id()).tmp
        try:
            return run_config(cfg, suite=RUNS, results=self.folder, data_dir=self.data_dir, progress=False,
                              on_eval=report)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _score(run_dir: Path) -> float:
        summary = read_summary(run_dir)
        if summary["status"] == "diverged":
            d = summary["diverged"]
            raise TrialFailed(f"diverged at round {d['round']}: {d['reason']}")
        value = summary["final"].get("val_accuracy")
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"final validation accuracy is {value}")
        return float(value)


def open_study(req: StudyRequest, folder: Path, budget: dict, pruner) -> optuna.Study:
    """Create the study or reopen it (a restart, or another worker, continues it); a different budget is
    refused."""
    storage = open_storage(req.storage or default_storage(folder.parent, req.name), on_stale_trial=retry)
    study = optuna.create_study(storage=storage, study_name=req.name, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    stored = study.user_attrs
    for key in BUDGET_KEYS:
        if key in stored and _searched(key, stored[key]) != _searched(key, _plain(budget[key])):
            raise ConfigError(f"--study: {req.name} was run with a different {key} "
                              f"({_short(stored[key])} vs {_short(budget[key])}); choose another --study name")
    # A restart may change the trial budget, but a worker joining live ones may not: each worker admits
    # trials against its own --trials, so mixed budgets would end the study at whichever is largest.
    if "trials" in stored and stored["trials"] != budget["trials"]:
        recover_stale_trials(study)
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            raise ConfigError(f"--trials: {budget['trials']} differs from the {stored['trials']} that the workers "
                              f"running study {req.name} use; give the same --trials, or change it once they stop")
    for key, value in budget.items():
        study.set_user_attr(key, _plain(value))
    study.sampler = NumberSeededTPE(req.seed)
    return study


def _searched(key: str, value):
    """What a budget entry says about the search: a config without its execution settings (threads, kernels,
    checkpoints), which change how trials run, never what they compute."""
    if key == "config" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in EXECUTION_KEYS}
    return value


def _plain(value):
    """``value`` as the storage returns it (JSON), so stored and requested budgets compare equal."""
    return json.loads(json.dumps(value))


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def budget_used(study: optuna.Study) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return sum(counts_towards_budget(t) for t in study.get_trials(deepcopy=False))


def tune(req: StudyRequest, data_dir=None, progress: bool = True) -> StudyOutcome:
    """Run the study's remaining trials (trials already counted in its storage are not run again), wait for
    other workers' trials, and write ``best.toml`` and ``trials.csv`` under ``<results>/tuning/<study>/``."""
    study, objective, folder = prepare(req, data_dir)
    run_trials(study, objective, req.trials, [_announce] if progress else [])
    return write_outputs(study, folder, req)


def prepare(req: StudyRequest, data_dir=None) -> tuple[optuna.Study, Objective, Path]:
    """The checked request's study (created, or reopened with the same budget), objective and folder."""
    if req.trials < 1:
        raise ConfigError(f"--trials: {req.trials} must be >= 1")
    base = base_config(req)
    cfg = config_from_dict(base)
    check_kernels(cfg)  # once, before a trial: a process with other kernels would fail every one
    fixed = {item.split("=", 1)[0].strip() for item in req.overrides}
    space = search_space(req.algorithm, fixed)
    if not space:
        raise ConfigError(f"--set: fixes every searched setting of {req.algorithm}; nothing is left to tune")
    if isinstance(req.pruner, str):
        pruner, pruner_text = make_pruner(req.pruner, cfg.rounds)
    else:
        pruner, pruner_text = req.pruner, type(req.pruner).__name__
    folder = results_root(req.results) / "tuning" / req.name
    budget = {"objective": OBJECTIVE, "trials": req.trials, "rounds": cfg.rounds, "pruner": pruner_text,
              "base": req.base, "seed": req.seed, "overrides": list(req.overrides),
              "search_space": {k: json.loads(distribution_to_json(d)) for k, d in space.items()},
              "config": cfg.to_dict()}
    study = open_study(req, folder, budget, pruner)
    return study, Objective(base, space, folder, data_dir, budget=req.trials), folder


def run_trials(study: optuna.Study, objective: Objective, trials: int, callbacks: list) -> None:
    """Run trials until the budget is used and no trial is queued or running anywhere: this worker's own,
    queued retries of dead workers' trials, then waiting for the other workers' trials to end."""
    while True:
        recover_stale_trials(study)
        used = budget_used(study)
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if used < trials or TrialState.WAITING in states:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
        elif TrialState.RUNNING in states:
            time.sleep(POLL_SECONDS)
        else:
            return


def _announce(study: optuna.Study, trial: FrozenTrial) -> None:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    if trial.state == TrialState.COMPLETE:
        what = f"val_accuracy {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        what = f"pruned at round {max(trial.intermediate_values)}"
    else:
        what = f"failed: {trial.user_attrs.get(FAIL_REASON)}"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    print(f"trial {trial.number}: {what} ({params}) {seconds:.1f} s", file=sys.stderr, flush=True)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_of(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The complete trial of highest value, the lowest-numbered one on a tie, whatever the storage's order."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def write_outputs(study: optuna.Study, folder: Path, req: StudyRequest) -> StudyOutcome:
    """``trials.csv`` and ``best.toml``, each replaced whole: workers sharing a study may write them at once."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    trials_csv = folder / "trials.csv"
    partial = _partial(trials_csv)
    write_trials_csv(trials, partial)
    os.replace(partial, trials_csv)
    best = best_of(trials)
    best_toml = None
    if best is not None:
        best_toml = folder / "best.toml"
        partial = _partial(best_toml)
        partial.write_text(best_toml_text(study, req))
        os.replace(partial, best_toml)
    return StudyOutcome(study, folder, trials_csv, best_toml, best)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def write_trials_csv(trials: list[FrozenTrial], path: Path) -> None:
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    retries: dict[int, list[int]] = {}
    for t in trials:
        if RETRY_OF in t.user_attrs:
            retries.setdefault(t.user_attrs[RETRY_OF], []).append(t.number)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["number", "state", "value", "counted", "last_round", "last_val_accuracy", "duration_s",
                      "fail_reason", "run_id", *keys])
        for t in trials:
            # Optuna gives a pruned trial its last reported value; that is not the objective, so only a
            # complete trial's value is written, and every trial's last reported round beside it.
            last = max(t.intermediate_values, default=None)
            out.writerow([t.number, t.state.name.lower(), repr(t.value) if t.state == TrialState.COMPLETE else "",
                          counts_towards_budget(t), "" if last is None else last,
                          "" if last is None else repr(t.intermediate_values[last]),
                          "" if t.duration is None else f"{t.duration.total_seconds():.3f}",
                          _fail_reason(t, retries), t.user_attrs.get("run_id", ""),
                          *(repr(t.params[k]) if k in t.params else "" for k in keys)])


def _fail_reason(trial: FrozenTrial, retries: dict[int, list[int]]) -> str:
    """The recorded reason; for a trial cut off without one (Ctrl-C, a dead worker), that it was
    interrupted, and which trial ran its values again if one did."""
    if trial.state != TrialState.FAIL or FAIL_REASON in trial.user_attrs:
        return trial.user_attrs.get(FAIL_REASON, "")
    origin = trial.user_attrs.get(RETRY_OF, trial.number)
    later = [n for n in retries.get(origin, []) if n > trial.number]
    return f"interrupted; retried as trial {min(later)}" if later else "interrupted"


def best_toml_text(study: optuna.Study, req: StudyRequest) -> str:
    """The best trial's values as a ``--set-file``, scoped to the study's algorithm, dataset and alpha so a
    sweep lays them over those cells only; the header says where they come from."""
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    best = best_of(trials)
    # Only trials with an outcome of their own: interrupted and surplus ones say nothing about the search.
    states = {s: sum(t.state == s and counts_towards_budget(t) for t in trials)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    lines = [
        f"# Tuned by `python -m benchmarks tune`: study {req.name}, best trial {best.number}",
        f"# {OBJECTIVE} = {best.value:.6f}; {sum(counts_towards_budget(t) for t in trials)} trials counted of a "
        f"budget of {attrs['trials']} ({states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
        f"{states[TrialState.FAIL]} failed)",
        f"# budget per algorithm: {attrs['rounds']} rounds, pruner {attrs['pruner']}, base suite {attrs['base']}, "
        f"sampler seed {attrs['seed']}" + (f", --set {' '.join(attrs['overrides'])}" if attrs["overrides"] else ""),
        "# apply with: python -m benchmarks sweep SUITE --set-file THIS_FILE (or run --set-file)",
        "",
        "[scope]",
        f"algorithm = {_toml_value(req.algorithm)}",
        f"\"dataset.name\" = {_toml_value(req.dataset)}",
        f"\"partition.alpha\" = {_toml_value(float(req.alpha))}",
    ]
    tables: dict[str, list[str]] = {}
    for key, value in best.params.items():
        table, _, leaf = key.rpartition(".")
        tables.setdefault(table, []).append(f"{leaf} = {_toml_value(value)}")
    for table, entries in tables.items():
        lines += ["", f"[{table}]", *entries]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))

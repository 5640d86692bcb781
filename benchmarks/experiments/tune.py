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
restarted study runs only the trials still missing from its budget. Several processes may share a study
through ``--storage``: each starts a trial while fewer than the budget are counted (running ones
included), so concurrent workers overshoot by at most one trial each when they race.
"""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import sys
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
from benchmarks.experiments.config import ClientConfig, apply_overrides, config_from_dict, read_toml, set_dotted
from benchmarks.data.datasets import DatasetError
from benchmarks.data.partition import PartitionError
from benchmarks.store.rundir import ResultsError, RunDirectory, results_root
from benchmarks.store.schema import read_summary
from benchmarks.engine.runner import run as run_config
from benchmarks.core.seeding import derive_seed
from benchmarks.experiments.suites import suite_path
from benchmarks.core.typed import ConfigError, SearchRange

OBJECTIVE = "final-round val_accuracy"
PRUNERS = ("median", "halving", "none")
RUNS = "runs"
FAIL_REASON = "fail_reason"
# Heartbeats let a restarted or parallel worker tell a trial whose process died from one still running.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
# Errors no trial can escape (missing data, a partition the base cannot make): they stop the study
# instead of failing every trial.
ENVIRONMENT_ERRORS = (DatasetError, PartitionError, ResultsError)
# Differences in these between the stored study and a new request would mix two searches in one study.
BUDGET_KEYS = ("objective", "rounds", "pruner", "seed", "search_space", "config")


class TrialFailed(Exception):
    """A trial whose configuration failed (diverged, raised): recorded with its reason, the study goes on."""


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
    """The ``[base]`` of the suite with the study's algorithm, dataset, alpha and rounds, the test set off,
    then ``--set``; validated here so a bad request fails before any trial."""
    data = apply_overrides(read_toml(suite_path(req.base)).get("base", {}), [])
    data["algorithm"] = req.algorithm
    set_dotted(data, "dataset.name", req.dataset)
    set_dotted(data, "partition.alpha", req.alpha)
    if req.rounds is not None:
        data["rounds"] = req.rounds
    data["eval_test"] = False
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
    by an interruption or a dead worker has no recorded reason and does not, so a restart runs it again."""
    if trial.state == TrialState.FAIL:
        return FAIL_REASON in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class Objective:
    """Runs one trial's config under ``<folder>/runs/``, reporting each round's validation accuracy to
    the pruner; the run folder of a pruned or failed trial is removed, a finished one is kept."""

    def __init__(self, base: dict, space: dict[str, BaseDistribution], folder: Path, data_dir=None):
        self.base = base
        self.space = space
        self.folder = folder
        self.data_dir = data_dir

    def __call__(self, trial: optuna.Trial) -> float:
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
    """Create the study or reopen it (a restart continues it); a different budget is refused."""
    url = req.storage or f"sqlite:///{(folder.parent / f'{req.name}.db').resolve()}"
    if req.storage is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                                 grace_period=GRACE_SECONDS)
    except Exception as exc:  # the database driver's own error types vary
        raise ConfigError(f"--storage: cannot open {url} ({type(exc).__name__}: {exc})") from None
    study = optuna.create_study(storage=storage, study_name=req.name, direction="maximize", pruner=pruner,
                                load_if_exists=True)
    stored = study.user_attrs
    for key in BUDGET_KEYS:
        if key in stored and stored[key] != _plain(budget[key]):
            raise ConfigError(f"--study: {req.name} was run with a different {key} "
                              f"({_short(stored[key])} vs {_short(budget[key])}); choose another --study name")
    for key, value in budget.items():
        study.set_user_attr(key, _plain(value))
    # Reseeded by the number of trials already there, so a resumed study does not replay its first samples.
    study.sampler = optuna.samplers.TPESampler(seed=derive_seed(req.seed, "tpe", len(study.trials)) % 2**32)
    return study


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
    """Run the study's remaining trials (trials already counted in its storage are not run again) and write
    ``best.toml`` and ``trials.csv`` under ``<results>/tuning/<study>/``."""
    if req.trials < 1:
        raise ConfigError(f"--trials: {req.trials} must be >= 1")
    base = base_config(req)
    cfg = config_from_dict(base)
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
    objective = Objective(base, space, folder, data_dir)
    callbacks = [_announce] if progress else []
    while budget_used(study) < req.trials:
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
    return write_outputs(study, folder, req)


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


def write_outputs(study: optuna.Study, folder: Path, req: StudyRequest) -> StudyOutcome:
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    trials_csv = folder / "trials.csv"
    write_trials_csv(trials, trials_csv)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_toml = None
    if complete:
        best_toml = folder / "best.toml"
        best_toml.write_text(best_toml_text(study, req))
    return StudyOutcome(study, folder, trials_csv, best_toml)


def write_trials_csv(trials: list[FrozenTrial], path: Path) -> None:
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
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
                          t.user_attrs.get(FAIL_REASON, ""), t.user_attrs.get("run_id", ""),
                          *(repr(t.params[k]) if k in t.params else "" for k in keys)])


def best_toml_text(study: optuna.Study, req: StudyRequest) -> str:
    """The best trial's values as a ``--set-file``, scoped to the study's algorithm, dataset and alpha so a
    sweep lays them over those cells only; the header says where they come from."""
    best = study.best_trial
    attrs = study.user_attrs
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                            TrialState.FAIL)}
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

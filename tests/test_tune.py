"""Tuning studies: outputs, pruning, resuming, failed trials, search spaces from the algorithms'
declarations, the test split never touched, and best.toml applied by ``--set-file``."""
from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass

import optuna
import pytest

import benchmarks.engine.runner
import benchmarks.experiments.tune
from benchmarks.engine import registry
from algorithms.fedavg import FedAvg
from benchmarks.cli.main import main
from benchmarks.experiments.config import load_config
from benchmarks.experiments.suites import load_suite
from benchmarks.experiments.tune import StudyRequest, base_config, search_space, tune
from benchmarks.core.typed import ConfigError, SearchRange, setting

optuna.logging.set_verbosity(optuna.logging.ERROR)


def request(results, **changes) -> StudyRequest:
    """Three two-round trials of FedProx on the smoke suite's synthetic data."""
    fields = dict(algorithm="fedprox", dataset="synthetic", alpha=0.1, trials=3, base="smoke", rounds=2,
                  pruner="none", results=results)
    return StudyRequest(**{**fields, **changes})


def read_trials(outcome) -> list[dict]:
    with open(outcome.trials_csv, newline="") as fh:
        return list(csv.DictReader(fh))


def count_runs(monkeypatch, fail_on: dict[int, BaseException] | None = None) -> list[int]:
    """Spy on the trial runs; the call numbered k (from 1) raises ``fail_on[k]`` instead of running."""
    calls = []
    real = benchmarks.experiments.tune.run_config

    def spy(*args, **kwargs):
        calls.append(len(calls) + 1)
        if fail_on and calls[-1] in fail_on:
            raise fail_on[calls[-1]]
        return real(*args, **kwargs)

    monkeypatch.setattr(benchmarks.experiments.tune, "run_config", spy)
    return calls


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One three-trial study, with every federation and every evaluated split of its runs recorded."""
    results = tmp_path_factory.mktemp("tune")
    feds, evaluated = [], []
    real_build, real_evaluate = benchmarks.engine.runner.build_federation, benchmarks.engine.runner.evaluate

    def build(*args, **kwargs):
        feds.append(real_build(*args, **kwargs))
        return feds[-1]

    def evaluate(model, data, batch_size):
        evaluated.append(data)
        return real_evaluate(model, data, batch_size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(benchmarks.engine.runner, "build_federation", build)
        mp.setattr(benchmarks.engine.runner, "evaluate", evaluate)
        outcome = tune(request(results), progress=False)
    return outcome, feds, evaluated


def test_study_writes_best_toml_and_trials_csv(study):
    outcome, _, _ = study
    rows = read_trials(outcome)
    assert [r["state"] for r in rows] == ["complete"] * 3
    assert {r["counted"] for r in rows} == {"True"}
    best = outcome.study.best_trial
    data = tomllib.loads(outcome.best_toml.read_text())
    assert data["scope"] == {"algorithm": "fedprox", "dataset.name": "synthetic", "partition.alpha": 0.1}
    assert data["algorithms"]["fedprox"]["mu"] == best.params["algorithms.fedprox.mu"]
    assert data["clients"]["lr"] == best.params["clients.lr"]
    assert float(rows[best.number]["value"]) == best.value == max(float(r["value"]) for r in rows)
    assert 1e-4 <= data["clients"]["lr"] <= 1e-2 and 1e-4 <= data["algorithms"]["fedprox"]["mu"] <= 1.0
    attrs = outcome.study.user_attrs
    assert (attrs["trials"], attrs["rounds"], attrs["pruner"], attrs["base"], attrs["seed"]) == (3, 2, "none",
                                                                                                  "smoke", 0)
    assert set(attrs["search_space"]) == {"clients.lr", "algorithms.fedprox.mu"}
    assert outcome.best_toml.read_text().startswith("# Tuned by")


def test_trial_runs_never_hold_or_evaluate_the_test_split(study):
    outcome, feds, evaluated = study
    assert len(feds) == 3 and all(f.test is None for f in feds)
    assert evaluated and all(any(d is f.val for f in feds) for d in evaluated)
    run_dirs = sorted((outcome.folder / "runs").iterdir())
    assert len(run_dirs) == 3
    for run_dir in run_dirs:
        with open(run_dir / "rounds.csv", newline="") as fh:
            splits = {row["split"] for row in csv.DictReader(fh)}
        assert "val" in splits and "test" not in splits


def test_sweep_set_file_applies_best_values_to_the_scoped_cells(study, monkeypatch, tmp_path):
    outcome, _, _ = study
    best = outcome.study.best_params
    seen = []
    monkeypatch.setattr("benchmarks.experiments.sweep.run_sweep", lambda suite, **kw: seen.append(suite) or [])
    assert main(["sweep", "smoke", "--set-file", str(outcome.best_toml), "--results", str(tmp_path)]) == 0
    (suite,) = seen
    for cfg in suite.cells:
        tuned = cfg.algorithm == "fedprox" and cfg.partition.alpha == 0.1
        assert (cfg.clients.lr == best["clients.lr"]) is tuned
        if cfg.algorithm == "fedprox":
            assert (cfg.hparams.mu == best["algorithms.fedprox.mu"]) is tuned
    with pytest.raises(ConfigError, match="no cell of suite smoke"):
        load_suite("smoke", ["partition.alpha=0.5"], [outcome.best_toml])


def test_run_set_file_applies_before_set_and_checks_its_scope(study):
    outcome, _, _ = study
    best = outcome.study.best_params
    target = ["algorithm=fedprox", "dataset.name=synthetic", "partition.alpha=0.1"]
    cfg = load_config(None, target, [outcome.best_toml])
    assert (cfg.clients.lr, cfg.hparams.mu) == (best["clients.lr"], best["algorithms.fedprox.mu"])
    assert load_config(None, target + ["clients.lr=0.005"], [outcome.best_toml]).clients.lr == 0.005
    with pytest.raises(ConfigError, match="is for algorithm=fedprox"):
        load_config(None, [], [outcome.best_toml])


class PruneOddTrials(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its first report: pruning made deterministic."""

    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


def test_pruned_trials_stop_early_and_leave_no_run_folder(tmp_path):
    outcome = tune(request(tmp_path, pruner=PruneOddTrials()), progress=False)
    rows = read_trials(outcome)
    assert [r["state"] for r in rows] == ["complete", "pruned", "complete"]
    assert rows[1]["last_round"] == "1" and rows[1]["counted"] == "True"
    assert rows[1]["value"] == ""
    assert float(rows[1]["last_val_accuracy"]) == outcome.study.trials[1].intermediate_values[1]
    kept = {p.name for p in (outcome.folder / "runs").iterdir()}
    assert kept == {rows[0]["run_id"], rows[2]["run_id"]}
    assert not list(tmp_path.rglob(".tmp-*"))
    assert outcome.study.user_attrs["pruner"] == "PruneOddTrials"


def test_restarted_study_runs_only_the_remaining_trials(tmp_path, monkeypatch):
    calls = count_runs(monkeypatch)
    tune(request(tmp_path, trials=2), progress=False)
    assert len(calls) == 2

    calls = count_runs(monkeypatch, fail_on={1: KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):
        tune(request(tmp_path), progress=False)

    calls = count_runs(monkeypatch)
    outcome = tune(request(tmp_path), progress=False)
    assert len(calls) == 1
    rows = read_trials(outcome)
    assert [(r["state"], r["counted"]) for r in rows] == [("complete", "True")] * 2 + [("fail", "False"),
                                                                                       ("complete", "True")]
    assert outcome.study.user_attrs["trials"] == 3
    assert len({r["clients.lr"] for r in rows}) == 4, "a resumed sampler must not replay earlier samples"

    with pytest.raises(ConfigError, match="different rounds"):
        tune(request(tmp_path, rounds=3), progress=False)
    with pytest.raises(ConfigError, match="--storage: cannot open"):
        tune(request(tmp_path, storage="nosuchdriver://x"), progress=False)


def test_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path, monkeypatch):
    count_runs(monkeypatch, fail_on={2: RuntimeError("boom")})
    outcome = tune(request(tmp_path), progress=False)
    rows = read_trials(outcome)
    assert [r["state"] for r in rows] == ["complete", "fail", "complete"]
    assert rows[1]["fail_reason"] == "RuntimeError: boom" and rows[1]["counted"] == "True"
    assert outcome.best_toml is not None
    assert not list(tmp_path.rglob(".tmp-*"))


@dataclass(frozen=True)
class ProbeParams:
    gamma: float = setting(0.5, gt=0.0, tune=SearchRange(0.1, 0.9))
    steps: int = setting(2, ge=1, tune=SearchRange(1, 3))
    mode: str = setting("a", choices=("a", "b"), tune=SearchRange(choices=("a", "b")))
    untuned: float = setting(1.0)


class DivergingProbe(FedAvg):
    """A throwaway algorithm that declares ranges and always diverges."""
    Params = ProbeParams
    name = "tune_probe"

    def after_aggregate(self, rnd, global_model, global_flat, updates):
        global_flat.fill_(float("nan"))


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "tune_probe", DivergingProbe)
    return "tune_probe"


def test_a_new_algorithm_is_searched_from_its_declarations(probe):
    space = search_space(probe)
    assert list(space) == ["clients.lr", "algorithms.tune_probe.gamma", "algorithms.tune_probe.steps",
                           "algorithms.tune_probe.mode"]
    assert isinstance(space["algorithms.tune_probe.gamma"], optuna.distributions.FloatDistribution)
    assert isinstance(space["algorithms.tune_probe.steps"], optuna.distributions.IntDistribution)
    assert space["algorithms.tune_probe.mode"].choices == ("a", "b")
    assert list(search_space(probe, fixed={"clients.lr", "algorithms.tune_probe.mode"})) == [
        "algorithms.tune_probe.gamma", "algorithms.tune_probe.steps"]


def test_diverged_trials_fail_with_their_reason_and_leave_no_best(probe, tmp_path, capsys):
    code = main(["tune", "--algorithm", probe, "--dataset", "synthetic", "--alpha", "0.1", "--trials", "2",
                 "--base", "smoke", "--rounds", "2", "--results", str(tmp_path), "--no-progress"])
    assert code == 1 and "no trial completed" in capsys.readouterr().out
    folder = tmp_path / "tuning" / f"{probe}_synthetic_a0.1_smoke"
    with open(folder / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["state"] for r in rows] == ["fail", "fail"]
    assert all(r["fail_reason"].startswith("diverged at round 1") for r in rows)
    assert not (folder / "best.toml").exists()
    for row in rows:
        config = json.loads((folder / "runs" / row["run_id"] / "config.json").read_text())
        probe_params = config["algorithms"][probe]
        assert probe_params["gamma"] == float(row["algorithms.tune_probe.gamma"])
        assert probe_params["steps"] == int(row["algorithms.tune_probe.steps"])
        assert repr(probe_params["mode"]) == row["algorithms.tune_probe.mode"]


def test_base_config_forces_validation_only_runs(tmp_path):
    data = base_config(request(tmp_path))
    assert data["eval_test"] is False and data["algorithm"] == "fedprox" and data["rounds"] == 2
    assert data["eval_every"] == 1  # the pruner sees every round, whatever the base suite evaluates
    assert base_config(request(tmp_path, overrides=("eval_every=2",)))["eval_every"] == 2
    assert data["partition"]["alpha"] == 0.1 and data["dataset"]["name"] == "synthetic"
    with pytest.raises(ConfigError, match="never reads the test set"):
        base_config(request(tmp_path, overrides=("eval_test=true",)))
    with pytest.raises(ConfigError, match="no validation split"):
        base_config(request(tmp_path, overrides=("dataset.val_fraction=0.0",)))


def test_a_searched_key_fixed_by_set_is_not_searched(tmp_path):
    outcome = tune(request(tmp_path, trials=1, overrides=("clients.lr=0.002",)), progress=False)
    assert outcome.study.best_trial.params.keys() == {"algorithms.fedprox.mu"}
    assert "lr" not in tomllib.loads(outcome.best_toml.read_text()).get("clients", {})
    run_id = outcome.study.best_trial.user_attrs["run_id"]
    config = json.loads((outcome.folder / "runs" / run_id / "config.json").read_text())
    assert config["clients"]["lr"] == 0.002

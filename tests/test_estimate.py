"""Run-time estimates: the work a config implies, each algorithm's extra server work, resumed suites."""
from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.cli.main import main
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.estimate import (STARTUP_SECONDS, Estimate, StepCosts, cell_seconds, cell_work,
                                 estimate_suite, format_duration, measure_costs)
from benchmarks.experiments.suites import load_suite

COSTS = StepCosts(train_sample=1e-3, forward_sample=1e-4)


def test_work_follows_the_splits_and_participation(tiny):
    # synthetic: 1200 train images, 10% val + 10% proxy carved out, 960 left for 6 clients, 3 per round
    work = cell_work(config_from_dict(tiny()))
    assert (work.val_size, work.proxy_size, work.test_size) == (120, 120, 400)
    assert work.clients_per_round == 3 and work.client_samples_per_round == 480
    assert cell_work(config_from_dict(tiny(eval_test=False))).test_size == 0
    steps = cell_work(config_from_dict(tiny(clients={"local_steps": 2, "batch_size": 16})))
    assert steps.client_samples_per_round == 3 * 2 * 16


def test_fedavg_is_client_training_plus_evaluation(tiny):
    cfg = config_from_dict(tiny(rounds=5, eval_every=2))  # evaluated after rounds 2, 4 and the last, 5
    expected = STARTUP_SECONDS + 5 * 480 * 1e-3 + 3 * (120 + 400) * 1e-4
    assert cell_seconds(cfg, COSTS) == pytest.approx(expected)
    fedprox = config_from_dict(tiny(rounds=5, eval_every=2, algorithm="fedprox"))
    assert cell_seconds(fedprox, COSTS) == pytest.approx(expected)


def test_feddf_adds_teachers_distillation_and_validation(tiny):
    data = tiny(rounds=2, algorithm="feddf")
    base = cell_seconds(config_from_dict(tiny(rounds=2)), COSTS)
    data["algorithms"] = {"feddf": {"distill_steps": 50, "eval_every_steps": 10, "patience_steps": 100,
                                    "batch_size": 8}}
    teacher = 3 * 120 * 1e-4  # the teacher-vs-student diagnostic: every client model over validation
    per_round = teacher + 3 * 120 * 1e-4 + 50 * 8 * 1e-3 + 6 * 120 * 1e-4
    assert cell_seconds(config_from_dict(data), COSTS) - base == pytest.approx(2 * per_round)
    # early stopping bounds the budget: 10,000 steps with patience 100 count as 200
    data["algorithms"]["feddf"]["distill_steps"] = 10_000
    capped = teacher + 3 * 120 * 1e-4 + 200 * 8 * 1e-3 + 21 * 120 * 1e-4
    assert cell_seconds(config_from_dict(data), COSTS) - base == pytest.approx(2 * capped)


def test_dynafed_adds_synthesis_once_and_finetuning_after_it(tiny):
    from algorithms.dynafed import UNROLLED_STEP_COST
    data = tiny(rounds=6, algorithm="dynafed")
    data["algorithms"] = {"dynafed": {"trajectory_length": 4, "expert_epochs": 1, "least_ave_num": 1,
                                      "iterations": 7, "syn_steps": 3, "ipc": 2, "distill_epochs": 5,
                                      "quality_models": 2, "quality_epochs": 4}}
    extra = cell_seconds(config_from_dict(data), COSTS) - cell_seconds(config_from_dict(tiny(rounds=6)), COSTS)
    images = 2 * 10
    synthesis = 7 * 3 * images * 1e-3 * UNROLLED_STEP_COST
    finetune = 3 * 5 * images * 1e-3  # synthesis before round 4, fine-tuning in rounds 4, 5, 6
    quality = 2 * 4 * images * 1e-3  # the diagnostic's fresh models on the synthetic set
    assert extra == pytest.approx(synthesis + finetune + quality)


def test_wall_time_is_total_over_jobs_but_never_below_the_longest_run():
    est = Estimate(cells=3, pending=3, jobs=2, seconds_by_run={"a": 10.0, "b": 10.0, "c": 100.0},
                   seconds_by_algorithm={}, costs={})
    assert est.wall_seconds == 100.0
    est = Estimate(cells=3, pending=3, jobs=2, seconds_by_run={"a": 60.0, "b": 60.0, "c": 60.0},
                   seconds_by_algorithm={}, costs={})
    assert est.wall_seconds == 90.0


def test_costs_are_measured_once_per_model_and_shape(tiny, monkeypatch):
    import benchmarks.experiments.estimate as estimate
    calls = []
    monkeypatch.setattr(estimate, "measure_costs", lambda cfg: calls.append(cfg.model.width) or COSTS)
    cells = [config_from_dict(tiny(algorithm=a)) for a in ("fedavg", "fedprox", "fedgen")]
    cells.append(config_from_dict(tiny(model={"name": "convnet", "width": 4, "depth": 2})))
    est = estimate_suite(cells, cells, jobs=1)
    assert calls == [8, 4] and len(est.seconds_by_run) == 4 and set(est.seconds_by_algorithm) == {"fedavg", "fedprox", "fedgen"}


def test_measured_costs_are_positive(tiny):
    costs = measure_costs(config_from_dict(tiny()), steps=1)
    assert costs.train_sample > 0 and costs.forward_sample > 0


def test_finished_runs_are_not_counted(results_dir, capsys):
    from benchmarks.experiments.sweep import run_sweep
    suite = load_suite("smoke", ["rounds=2"])
    fedavg = [c for c in suite.cells if c.algorithm == "fedavg"]
    run_sweep(replace(suite, cells=fedavg), jobs=1, results=results_dir, progress=False)
    assert main(["estimate", "smoke", "--set", "rounds=2", "--results", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "16 of 18 runs left" in out and "fedavg" not in out.split("by algorithm")[1]


def test_the_cli_prints_an_estimate_and_rejects_bad_jobs(results_dir, capsys):
    assert main(["estimate", "smoke", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "18 of 18 runs left, --jobs 2" in out and "estimated wall time" in out and "ms per training sample" in out
    assert main(["estimate", "smoke", "--jobs", "0"]) == 2
    assert "--jobs: 0 must be >= 1" in capsys.readouterr().err


def test_durations_read_naturally():
    assert [format_duration(s) for s in (12, 90, 3 * 3600 + 5 * 60, 2 * 86400 + 7200)] == \
        ["12 s", "2 min", "3 h 05 min", "2 d 2 h"]


def test_runs_an_earlier_report_published_are_not_counted(results_dir, tmp_path, capsys):
    suite = load_suite("smoke")
    fedavg = [c.run_id() for c in suite.cells if c.algorithm == "fedavg"]
    (tmp_path / "runs.csv").write_text("suite,run,excluded,status\n" + "".join(f"smoke,{r},,complete\n" for r in fedavg))
    (tmp_path / "curves.csv").write_text("run,round,split,metric,value\n")
    assert main(["estimate", "smoke", "--published", str(tmp_path), "--results", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{18 - len(fedavg)} of {18 - len(fedavg)} runs left" in out and "fedavg" not in out.split("by algorithm")[1]

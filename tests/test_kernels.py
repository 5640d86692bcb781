"""A run's CPU kernel set (``cpu_kernels``): not part of the experiment (the run id and the suite folder stay),
set by the command line before torch loads, recorded in summary.json, and refused when the process
computes with another; the grid that pins it keeps the run ids of its published report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import benchmarks.engine.runner
import benchmarks.engine.kernels
from benchmarks.cli.kernels import ensure_kernels
from benchmarks.core.typed import ConfigError
from benchmarks.engine.kernels import CAP_VARIABLES, KERNEL_SETS, KernelMismatch, check_kernels, kernel_env
from benchmarks.engine.runner import RunStopped, run
from benchmarks.experiments.ray_cells import pinned_environment
from benchmarks.experiments.tune import _searched
from benchmarks.experiments.config import config_from_dict
from benchmarks.experiments.suites import load_suite
from benchmarks.store.rundir import RunDirectory

REPO = Path(__file__).resolve().parents[1]


def _other_than_running() -> str:
    running = torch.backends.cpu.get_cpu_capability()
    return next(name for name, (_, _, reported) in KERNEL_SETS.items() if running not in reported)


def test_the_kernel_set_is_execution_not_experiment(tiny):
    cfg = config_from_dict(tiny())
    pinned = replace(cfg, execution=replace(cfg.execution, cpu_kernels="avx2"))
    assert pinned.run_id() == cfg.run_id() and pinned.execution.cpu_kernels == "avx2"
    with pytest.raises(ConfigError, match="cpu_kernels"):
        config_from_dict(tiny(cpu_kernels="sse9"))


def test_a_process_with_other_kernels_refuses_the_run_and_writes_nothing(tiny, results_dir):
    cfg = config_from_dict(tiny(cpu_kernels=_other_than_running()))
    with pytest.raises(KernelMismatch, match=r"cpu_kernels: the run asks for .* start it with `hetbench run`"):
        run(cfg, suite="pinned", progress=False)
    out = RunDirectory(results_dir, "pinned", cfg.run_id())
    assert not out.final.exists() and not out.tmp.exists()


def test_runs_that_pin_different_kernel_sets_are_not_started_together(tiny):
    cells = [config_from_dict(tiny(cpu_kernels=k)) for k in ("avx2", "default")]
    with pytest.raises(ConfigError, match="cpu_kernels: these runs pin avx2, default"):
        ensure_kernels(cells, may_restart=False)
    ensure_kernels([config_from_dict(tiny())], may_restart=True)  # nothing pinned: nothing to do


def test_the_command_line_restarts_under_the_pinned_kernels_and_records_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES}
    done = subprocess.run([sys.executable, "-m", "benchmarks", "sweep", "smoke", "--cell", "0", "--set",
                           "cpu_kernels=default", "--results", str(tmp_path), "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "restarting with ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41" in done.stderr
    summary = json.loads(next((tmp_path / "smoke").glob("*/summary.json")).read_text())  # the suite's own folder
    assert summary["versions"]["cpu_capability"] == "DEFAULT"
    assert (summary["versions"]["aten_cpu_capability_env"], summary["versions"]["onednn_max_cpu_isa_env"]) == (
        "default", "SSE41")
    assert summary["execution"]["cpu_kernels"] == "default"


def test_cpu_regime_pins_avx2_and_keeps_the_run_ids_of_its_published_report():
    suite = load_suite("cpu_regime")
    assert {cfg.execution.cpu_kernels for cfg in suite.cells} == {"avx2"}
    runs = pd.read_csv(REPO / "reports" / "cpu_regime" / "runs.csv", keep_default_na=False)
    published = set(runs.loc[runs["excluded"] == "", "run"])
    assert published and published <= {cfg.run_id() for cfg in suite.cells}


def test_a_gpu_run_ignores_the_pin_and_a_cpu_without_the_instructions_is_refused(tiny, monkeypatch):
    check_kernels(config_from_dict(tiny(cpu_kernels=_other_than_running(), device="cuda")))  # no refusal
    monkeypatch.setattr(torch.cpu, "_is_avx2_supported", lambda: False)
    with pytest.raises(KernelMismatch, match="this CPU has no avx2 instructions"):
        ensure_kernels([config_from_dict(tiny(cpu_kernels="avx2"))], may_restart=False)


def test_a_pinned_run_resumes_only_under_the_kernels_it_was_checkpointed_with(tiny, results_dir, monkeypatch):
    cfg = config_from_dict(tiny(cpu_kernels="avx2", rounds=3, checkpoint_every=1))
    monkeypatch.setattr(benchmarks.engine.runner, "check_kernels", lambda cfg: None)  # as if capped right
    with pytest.raises(RunStopped):
        run(cfg, suite="pinned", progress=False, deadline=0.0)
    before = benchmarks.engine.kernels.running_kernels()
    monkeypatch.setattr(benchmarks.engine.runner, "running_kernels", lambda: {**before, "capability": "OTHER"})
    with pytest.raises(KernelMismatch, match="was checkpointed computing with"):
        run(cfg, suite="pinned", progress=False)
    monkeypatch.setattr(benchmarks.engine.runner, "running_kernels", lambda: before)
    assert run(cfg, suite="pinned", progress=False).is_dir()  # under its own kernels it resumes


def test_ray_tasks_of_pinned_runs_carry_the_caps(tiny):
    assert pinned_environment(config_from_dict(tiny(cpu_kernels="avx2"))) == {
        "runtime_env": {"env_vars": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}}
    assert pinned_environment(config_from_dict(tiny())) == {}
    assert kernel_env("") == {}


def test_a_tuning_study_reopens_whatever_its_execution_settings(tiny):
    before = config_from_dict(tiny()).to_dict()
    after = config_from_dict(tiny(cpu_kernels="avx2", threads=2)).to_dict()
    assert before != after and _searched("config", before) == _searched("config", after)
    assert _searched("config", before) != _searched("config", config_from_dict(tiny(rounds=5)).to_dict())

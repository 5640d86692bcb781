"""The GPU check (issue G), rehearsed on the CPU: the very command the GPU machine will run, at a tiny scale,
over a tiny Fashion-MNIST written here, with every import our code makes of a package the GPU image lacks
refused; plus its time plan, its bundle and its refusals."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from benchmarks.perf import gpu_check
from benchmarks.perf.gpu_check import device_command, make_bundle, plan_budget
from test_datasets import write_fmnist

REPO = Path(__file__).resolve().parents[1]
# What the GPU image has besides the standard library (issue G); our own packages are allowed too.
GPU_IMAGE_PACKAGES = ("torch", "numpy", "pandas", "matplotlib", "tqdm", "PIL")

IMPORT_GUARD = textwrap.dedent('''
    """Refuse any import that code under HETBENCH_GUARD_ROOT makes of a package outside the allowed set."""
    import importlib.abc
    import os
    import sys

    ROOT = os.environ["HETBENCH_GUARD_ROOT"]
    ALLOWED = set(os.environ["HETBENCH_GUARD_ALLOWED"].split(",")) | set(sys.stdlib_module_names)


    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            top = name.partition(".")[0]
            if top in ALLOWED or top.startswith("_"):
                return None
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back
            importer = frame.f_code.co_filename if frame is not None else ""
            if importer.startswith(ROOT) and "/.venv/" not in importer and "site-packages" not in importer:
                raise ImportError(f"{name} is not on the GPU image (imported by {importer})")
            return None


    sys.meta_path.insert(0, Guard())
''')


def guarded_env(tmp_path: Path, root: Path) -> dict:
    """An environment whose ``python3`` is this interpreter with the import guard installed."""
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(IMPORT_GUARD)
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    python3 = shim / "python3"  # a script, not a link: a link to a venv's python loses the venv
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HETBENCH_")}
    env.update(PATH=f"{shim}:{env['PATH']}", PYTHONPATH=str(guard), HETBENCH_GUARD_ROOT=str(root),
               HETBENCH_GUARD_ALLOWED=",".join(("benchmarks", "algorithms", "reports", *GPU_IMAGE_PACKAGES)))
    return env


def test_the_import_guard_refuses_a_missing_package(tmp_path):
    """The guard itself works: code under its root importing optuna fails, the standard library does not."""
    script = tmp_path / "uses_optuna.py"
    script.write_text("import json\nimport optuna\n")
    done = subprocess.run(["python3", str(script)], env=guarded_env(tmp_path, tmp_path), capture_output=True, text=True)
    assert done.returncode != 0 and "optuna is not on the GPU image" in done.stderr


@pytest.mark.slow
def test_the_device_command_rehearsed_on_the_cpu(tmp_path):
    """What the GPU machine will run, at the tiny scale: bundle, command line, output files within the device
    tool's limits, both parts measured, no import of a package the GPU image lacks."""
    source = tmp_path / "fmnist"
    source.mkdir()
    write_fmnist(source, n_train=800, n_test=100)
    bundle = tmp_path / "bundle"
    size = make_bundle(bundle, data_dir=source)
    assert size["fits"] and sorted(p.name for p in (bundle / "data").iterdir()) == sorted(
        p.name for p in source.iterdir())
    out = tmp_path / "out"
    out.mkdir()
    env = guarded_env(tmp_path, REPO)
    env["OUT"] = str(out)
    done = subprocess.run(["bash", "-c", device_command(str(bundle), budget_seconds=240, scale="tiny")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    files = sorted(p for p in out.rglob("*"))
    assert len(files) <= 8 and all(p.is_file() and p.stat().st_size < 16 * 2 ** 20 for p in files)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files)
    assert {p.name for p in files} == {*gpu_check.OUTPUT_FILES, "log.txt"}

    data = json.loads((out / "gpu_check.json").read_text(), parse_constant=_not_strict_json)
    assert data["environment"]["git_revision"] == (bundle / "revision.txt").read_text().strip()
    assert data["paper_reference"] == {"fedavg": 74.50, "dynafed": 87.52}
    assert [r["executor"] for r in data["executors"]] == ["sequential", "vectorised"]
    assert all(r["round_seconds"] > 0 and r["samples_per_second"] > 0 and not r["fallback"] for r in data["executors"])
    assert data["equality"]["same_start"] and data["equality"]["equal"]
    runs = data["paper_runs"]
    assert set(runs) == {"fedavg", "dynafed"}
    assert all(r["status"] == "complete" and r["rounds_done"] == r["rounds"] == 6 for r in runs.values())
    assert runs["dynafed"]["synthesis_seconds"] > 0 and "engaged" in runs["dynafed"]["mechanism"]
    assert runs["fedavg"]["evaluated_rounds"] == 7  # every round and round 0
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    for run in runs.values():
        assert f"{run['run_id']}/rounds.csv" in names and f"{run['run_id']}/summary.json" in names
    assert not any(name.endswith(("checkpoint.pt", "owner.json")) for name in names)
    summary = (out / "summary.md").read_text()
    assert "## (a) Executors" in summary and "## (b) FedAvg and DynaFed" in summary and "| dynafed | complete" in summary
    assert "## (a) Executors" in (out / "log.txt").read_text()


def _not_strict_json(constant):
    raise AssertionError(f"{constant} is not strict JSON")


def test_the_plan_keeps_the_paper_budget_when_it_fits():
    plan = plan_budget(200, 25, round_seconds=0.3, seconds_per_iteration=0.05, iterations=3000, seconds_left=400)
    assert (plan["rounds"], plan["iterations"], plan["deviations"]) == (200, 3000, [])
    # a synthesis over half the usable time is kept whole when everything fits (180 + 40 s of 320)
    plan = plan_budget(200, 25, round_seconds=0.1, seconds_per_iteration=0.06, iterations=3000, seconds_left=400)
    assert (plan["rounds"], plan["iterations"], plan["deviations"]) == (200, 3000, [])


def test_the_plan_caps_the_synthesis_then_cuts_the_rounds_and_says_so():
    rounds_cut = plan_budget(200, 25, round_seconds=0.5, seconds_per_iteration=0.05, iterations=3000, seconds_left=400)
    assert rounds_cut["iterations"] == 3000 and rounds_cut["rounds"] == 170  # (0.8 * 400 - 150) / (2 * 0.5)
    assert rounds_cut["deviations"] == [f"rounds {rounds_cut['rounds']} (paper 200)"]
    slow_synthesis = plan_budget(200, 25, round_seconds=0.3, seconds_per_iteration=0.2, iterations=3000, seconds_left=400)
    assert slow_synthesis["iterations"] == int(0.5 * 0.8 * 400 / 0.2) and "matching iterations" in slow_synthesis["note"]
    hopeless = plan_budget(200, 25, round_seconds=10.0, seconds_per_iteration=0.01, iterations=100, seconds_left=100)
    assert hopeless["rounds"] == 26  # DynaFed still synthesises; the runs' deadlines stop them where time ends


def test_the_full_scale_refuses_a_cpu_in_one_line(tmp_path, capsys):
    from benchmarks.cli.main import main

    assert main(["perf", "--gpu-check", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --gpu-scale: full") and "\n" not in err


def test_git_revision_falls_back_to_what_the_sender_wrote(tmp_path, monkeypatch):
    """A copy of the tree on the GPU machine has no git repository: the revision comes from the bundle."""
    from benchmarks.store import rundir

    monkeypatch.setattr(rundir, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("HETBENCH_GIT_REVISION", "abc123-dirty")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    rundir.git_revision.cache_clear()  # it is computed once per process
    try:
        assert rundir.git_revision() == "abc123-dirty"
        monkeypatch.delenv("HETBENCH_GIT_REVISION")
        rundir.git_revision.cache_clear()
        assert rundir.git_revision() == "unknown"
    finally:
        rundir.git_revision.cache_clear()


@pytest.mark.slow
def test_a_budget_too_small_cuts_the_plan_and_stops_both_runs_early(tmp_path, monkeypatch):
    """When time runs out the check still reports: (b) is cut to DynaFed's minimum, both runs stop at their
    deadlines after one round, and their partial folders (rounds.csv, no checkpoint) are packed. A part that
    fails (here the executors' comparison) is reported and the parts after it still run."""
    def broken(*args):
        raise RuntimeError("boom on this device")

    monkeypatch.setattr(gpu_check, "compare_executors", broken)
    source = tmp_path / "fmnist"
    source.mkdir()
    write_fmnist(source, n_train=800, n_test=100)
    from benchmarks.cli.main import main

    # through the CLI, which exits 1 (not equal: not compared) rather than failing on the missing comparison
    assert main(["perf", "--gpu-check", str(tmp_path / "out"), "--gpu-scale", "tiny", "--device", "cpu",
                 "--data-dir", str(source), "--budget-seconds", "0.01"]) == 1
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert data["equality"] is None and "boom on this device" in data["errors"]["equality"]
    assert "## Failed: equality" in (tmp_path / "out" / "summary.md").read_text()
    assert data["plan"]["deviations"] and data["plan"]["iterations"] == 1
    runs = data["paper_runs"]
    assert all(r["status"] == "stopped at the time budget" and r["rounds_done"] == 1 for r in runs.values())
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert all(f"{r['run_id']}/rounds.csv" in names for r in runs.values())
    assert not any(name.endswith("checkpoint.pt") for name in names)
    assert "stopped at the time budget | 1 of" in (tmp_path / "out" / "summary.md").read_text()


def test_packed_runs_leave_out_checkpoints_and_claims(tmp_path):
    run_dir = tmp_path / ".tmp-fedavg_x"
    run_dir.mkdir()
    for name in ("rounds.csv", "checkpoint.pt", "owner.json"):
        (run_dir / name).write_text("x")
    report = gpu_check.Report(tmp_path / "out", data={"scale": "tiny", "budget_seconds": 1.0}, run_dirs=[run_dir])
    report.write()
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        assert tar.getnames() == ["fedavg_x", "fedavg_x/rounds.csv"]


def test_the_full_scale_is_the_issues_setting():
    """What the GPU will run, built here (configs only): (a) 80 clients, 32 a round, ConvNet-128, all of
    Fashion-MNIST, 1 epoch at batch 32, persistent Adam 1e-3; (b) suite paper's cells, every round evaluated,
    DynaFed at the official budget, or the cut the plan asks for."""
    import torch

    cuda = torch.device("cuda")
    a = gpu_check.executor_config(gpu_check.SCALES["full"], "vectorised", cuda, 5)
    assert (a.partition.clients, a.clients_per_round, a.model.width, a.dataset.train_subset) == (80, 32, 128, 0)
    assert (a.clients.local_epochs, a.clients.batch_size, a.clients.optimizer, a.clients.lr,
            a.clients.persistent_state) == (1, 32, "adam", 1e-3, True)
    assert (a.device, a.executor, a.execution.checkpoint_every) == ("cuda", "vectorised", 0)
    b = gpu_check.paper_cells(gpu_check.SCALES["full"], cuda)
    fedavg, dynafed = b["fedavg"], b["dynafed"]
    assert (fedavg.rounds, fedavg.eval_every, fedavg.partition.alpha, fedavg.dataset.name) == (200, 1, 0.01, "fmnist")
    p = dynafed.hparams
    assert (p.trajectory_length, p.ipc, p.syn_steps, p.iterations) == (25, 15, 20, 3000)
    cut = gpu_check.paper_cells(gpu_check.SCALES["full"], cuda, rounds=120, iterations=1800)
    assert (cut["fedavg"].rounds, cut["dynafed"].rounds, cut["dynafed"].hparams.iterations) == (120, 120, 1800)


def test_a_dynafed_run_stopped_after_its_synthesis_is_described(tmp_path, monkeypatch):
    """The deadline is read once a round: a fake clock that ticks once a read stops the tiny DynaFed after
    round 5, its synthesis (round 4) done, and the partial folder is described."""
    import itertools

    from benchmarks.engine import runner

    source = tmp_path / "fmnist"
    source.mkdir()
    write_fmnist(source, n_train=800, n_test=100)
    ticks = itertools.count(1)
    monkeypatch.setattr(runner, "deadline_clock", lambda: float(next(ticks)))
    cfg = gpu_check.paper_cells(gpu_check.SCALES["tiny"], torch_cpu())["dynafed"]
    run_dir, described = gpu_check.run_paper_cell(cfg, tmp_path / "results", source, deadline=5.0)
    assert described["status"] == "stopped at the time budget" and described["rounds_done"] == 5
    assert described["synthesis_seconds"] > 0 and described["mean_round_seconds_without_one_off"] > 0
    assert "server.synthetic_only_val_accuracy" in described["server_diagnostics_last"]
    assert "mechanism" not in described  # a stopped run has no summary yet


def torch_cpu():
    import torch
    return torch.device("cpu")

"""Array jobs: ``sweep --list-cells`` prints every cell's index, run id and state (finished, claimed by a live
writer, pending, which includes a run whose writer died); ``--cell I`` and ``--shard i/n`` run exactly those
cells and leave a cell that a live writer claims to it; bad values are one line naming the option and the
allowed range."""
from __future__ import annotations

import json
import time

import pytest

import benchmarks.experiments.sweep
from benchmarks.cli.main import main
from benchmarks.experiments.suites import load_suite
from benchmarks.store.claims import CLAIM_FILE
from benchmarks.store.rundir import RunDirectory

SMOKE = load_suite("smoke")
IDS = [c.run_id() for c in SMOKE.cells]
DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max: no such process here


def _claim(root, index, host, pid):
    tmp = RunDirectory(root, "smoke", IDS[index]).tmp
    tmp.mkdir(parents=True)
    (tmp / CLAIM_FILE).write_text(json.dumps({"host": host, "pid": pid, "heartbeat": time.time()}))
    return tmp / CLAIM_FILE


def _finished(root) -> list[str]:
    folder = root / "smoke"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.exists() else []


def test_list_cells_prints_index_run_id_and_state(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "here")
    assert main(["sweep", "smoke", "--cell", "1", "--results", str(tmp_path), "--no-progress"]) == 0
    _claim(tmp_path, 4, "elsewhere", 4242)     # a live writer on another host: its heartbeat is fresh
    _claim(tmp_path, 7, "here", DEAD_PID)      # this host's writer died: the run is resumable, so pending
    capsys.readouterr()
    assert main(["sweep", "smoke", "--list-cells", "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    states = {1: "finished", 4: "claimed"}
    assert lines == [f"{i} {IDS[i]} {states.get(i, 'pending')}" for i in range(len(IDS))]
    assert main(["sweep", "smoke", "--list-cells", "--shard", "1/6", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{i} {IDS[i]} {states.get(i, 'pending')}" for i in (1, 7, 13)]


def test_cell_runs_that_cell_only_and_leaves_a_live_claim_to_its_writer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HETBENCH_HOST", "here")
    assert main(["sweep", "smoke", "--cell", "3", "--results", str(tmp_path), "--no-progress"]) == 0
    assert _finished(tmp_path) == [IDS[3]]
    claim = _claim(tmp_path, 2, "elsewhere", 4242)
    before = claim.read_bytes()
    capsys.readouterr()
    assert main(["sweep", "smoke", "--cell", "2", "--results", str(tmp_path), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"run {IDS[2]} is being written by pid 4242 on host elsewhere; left to it" in err
    assert claim.read_bytes() == before and sorted(p.name for p in claim.parent.iterdir()) == [CLAIM_FILE]
    assert _finished(tmp_path) == [IDS[3]]
    # The same cell whose writer died on this host is taken over and run.
    _claim(tmp_path, 6, "here", DEAD_PID)
    assert main(["sweep", "smoke", "--cell", "6", "--results", str(tmp_path), "--no-progress"]) == 0
    assert _finished(tmp_path) == sorted([IDS[3], IDS[6]])


def test_shards_partition_the_cells(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(benchmarks.experiments.sweep, "run_sweep", lambda suite, **kw: seen.append(suite) or [])
    for i in range(4):
        assert main(["sweep", "smoke", "--shard", f"{i}/4", "--results", str(tmp_path)]) == 0
    shards = [[c.run_id() for c in suite.cells] for suite in seen]
    assert shards == [IDS[i::4] for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(IDS) and all(s.name == "smoke" for s in seen)
    assert main(["sweep", "smoke", "--cell", "17", "--results", str(tmp_path)]) == 0
    assert [c.run_id() for c in seen[-1].cells] == [IDS[17]]


@pytest.mark.parametrize("args,message", [
    (["--cell", "18"], "--cell: 18 is out of range; suite smoke has 18 cells, 0 to 17"),
    (["--cell", "-1"], "--cell: -1 is out of range; suite smoke has 18 cells, 0 to 17"),
    (["--cell", "first"], "--cell: 'first' is not a cell index; suite smoke has 18 cells, 0 to 17"),
    (["--shard", "4/4"], "--shard: '4/4' must be i/n with n >= 1 and 0 <= i < n (e.g. 0/4); suite smoke has 18"),
    (["--shard", "0/0"], "--shard: '0/0' must be i/n with n >= 1 and 0 <= i < n"),
    (["--shard", "half"], "--shard: 'half' must be i/n"),
    (["--cell", "1", "--shard", "0/2"], "argument --shard: not allowed with argument --cell"),
    (["--address", "auto"], "--address: only with --backend ray"),
])
def test_bad_selections_are_one_line_naming_the_option(tmp_path, capsys, args, message):
    assert main(["sweep", "smoke", *args, "--results", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "smoke").exists()


def _published(folder, included, excluded=(), diverged=(), suite="smoke"):
    """A report folder's runs.csv as `hetbench report` writes it, reduced to the columns a sweep reads."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ([f"{suite},{IDS[i]},fedavg,,complete" for i in included]
            + [f"{suite},.tmp-{IDS[i]},fedavg,unfinished,complete" for i in excluded]
            + [f"{suite},{IDS[i]},fedavg,diverged at round 2,diverged" for i in diverged])
    (folder / "runs.csv").write_text("suite,run,algorithm,excluded,status\n" + "\n".join(rows) + "\n")
    (folder / "curves.csv").write_text("run,round,split,metric,value\n")
    return folder


def test_cells_an_earlier_report_published_are_listed_as_such_and_not_run(tmp_path, capsys, monkeypatch):
    report = _published(tmp_path / "report", included=[2], excluded=[6], diverged=[5])
    assert main(["sweep", "smoke", "--list-cells", "--published", str(report), "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{i} {IDS[i]} {'published' if i in (2, 5) else 'pending'}" for i in range(len(IDS))]
    seen = []
    monkeypatch.setattr(benchmarks.experiments.sweep, "run_sweep", lambda suite, **kw: seen.append(suite) or [])
    assert main(["sweep", "smoke", "--shard", "0/2", "--published", str(report), "--results", str(tmp_path)]) == 0
    assert [c.run_id() for c in seen[-1].cells] == [IDS[i] for i in range(0, len(IDS), 2) if i != 2]
    assert "1 of 9 cells are published in" in capsys.readouterr().err


@pytest.mark.parametrize("make,message", [
    (lambda tmp: tmp / "none", "is not a folder"),
    (lambda tmp: _published(tmp / "other", [1], suite="quick"), "holds suite quick, not smoke"),
    (lambda tmp: _published(tmp / "unreadable", [1]) and (tmp / "unreadable" / "runs.csv").unlink() or tmp / "unreadable",
     "--published: cannot read"),
    (lambda tmp: _published(tmp / "bad", [1]) and (tmp / "bad" / "runs.csv").write_text("a,b\n1,2\n") and tmp / "bad",
     "lacks the columns suite, run, excluded and status"),
    (lambda tmp: _published(tmp / "half", [1]) and (tmp / "half" / "curves.csv").unlink() or tmp / "half",
     "has no curves.csv"),
])
def test_a_bad_published_folder_is_one_line_naming_the_option(tmp_path, capsys, make, message):
    folder = make(tmp_path)
    assert main(["sweep", "smoke", "--published", str(folder), "--results", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "smoke").exists()

"""The report builder on hand-written results folders: tables against golden files, exclusions of
damaged runs, configurations never averaged together, provenance, byte-identical rebuilds (from the
results and from the report's own CSVs), links of index.html, one-line errors, and the promise that
it never imports torch.

Regenerate the golden files with ``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_reports.py``
and review the diff before keeping it.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.store.schema import SCHEMA
from reports import build_from_csv, build_report
from reports.__main__ import main as reports_main
from reports.tables import cpu_clocked, is_one_off
from reports.figures import Panel, Series, line_style, line_width, round_ticks
from reports.tables import Stats, winner

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "reports"
SUITE = "golden"
# What the registries declare, as the runner records it in summary.json.
TITLES = {"fedavg": "FedAvg", "fedprox": "FedProx", "feddf": "FedDF", "fedgen": "FedGen", "dynafed": "DynaFed",
          "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
DEVIATIONS = ["partition.clients=4 (paper 80)", "rounds=3 (paper 200)"]
VERSIONS = {"python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "cpu": "AMD EPYC", "cpu_capability": "AVX2"}
# 2025-01-02 03:04 UTC: summaries get this modification time (plus the seed in minutes), so that the
# report's dates, which come from the runs, are the same on every test run.
STAMP = 1735787040


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_run(suite_dir: Path, algorithm: str, dataset: str, alpha: float, seed: int, test_curve: list[float], *,
              has_val: bool = True, status: str = "complete", schema: int = SCHEMA, deviations=DEVIATIONS,
              artifacts=(), server_parts: dict | None = None, folder: str | None = None, drop=(),
              clients: dict | None = None, mechanism: dict | None = None, config: dict | None = None,
              summary_extra: dict | None = None, cpu_share: float | None = None, cpu_from: int = 1) -> Path:
    """One run folder in the documented results format; ``test_curve`` holds rounds 0..R. ``server_parts``
    are one-off server work timed in round 1 (its seconds are part of that round's server and round time);
    ``config`` is merged into the run's config. ``cpu_share``: every timing from round ``cpu_from`` on has a
    CPU-clock twin of that share of its wall seconds (as from a run resumed after the CPU clock landed)."""
    config = _merge({"algorithm": algorithm, "seed": seed, "rounds": len(test_curve) - 1,
                     "dataset": {"name": dataset}, "partition": {"scheme": "balanced_dirichlet", "alpha": alpha,
                                                                "clients": 4, "seed": seed},
                     "model": {"name": "convnet", "width": 32}, "clients": clients or {"lr": 0.001}}, config or {})
    run_id = f"{algorithm}_{dataset}_balanced_dirichlet-{alpha:g}_s{seed}_0123456789"
    path = suite_dir / (folder or run_id)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    last = len(test_curve) - 1
    with open(path / "rounds.csv", "w") as fh:
        fh.write("round,split,metric,value\n")
        for rnd, acc in enumerate(test_curve):
            fh.write(f"{rnd},val,accuracy,{acc!r}\n{rnd},test,accuracy,{acc!r}\n{rnd},test,loss,{2.0 - acc!r}\n")
    with open(path / "timings.csv", "w") as fh:
        fh.write("round,split,metric,value\n")
        for rnd in range(1, last + 1):
            once = sum((server_parts or {}).values()) if rnd == 1 else 0.0
            seconds = {"round": 1.0 + seed + 0.25 * rnd + once, "client": 0.5 + seed, "server": 0.25 * rnd + once,
                       "eval": 0.125, **({f"server_{part}": s for part, s in (server_parts or {}).items()}
                                         if rnd == 1 else {})}
            for name, wall in seconds.items():
                fh.write(f"{rnd},time,{name}_seconds,{wall}\n")
                if cpu_share is not None and rnd >= cpu_from:
                    fh.write(f"{rnd},time,{name}_cpu_seconds,{cpu_share * wall}\n")
    summary = {
        "schema": schema, "run_id": run_id, "suite": suite_dir.name, "status": status, "config": config,
        "seed": seed, "partition": {"class_counts": [[5 + seed, 0, 1], [0, 7, 2], [3, 3, 0], [1, 0, 9]],
                                    "heterogeneity": 0.5, "heterogeneity_metric": "mean_js_distance"},
        "final": {"round": last, "test_accuracy": test_curve[-1]},
        "best_val": {"round": 1, "val_accuracy": test_curve[1], "test_accuracy": test_curve[1]} if has_val else None,
        "timing": {"total_seconds": (1.0 + seed) * last}, "paper_deviations": list(deviations),
        "diverged": {"round": last, "reason": "non-finite training loss"} if status == "diverged" else None,
        "artifacts": list(artifacts),
        "algorithm_title": TITLES.get(algorithm, algorithm),
        "dataset": {"title": TITLES.get(config["dataset"]["name"], config["dataset"]["name"])},
        "execution": {"threads": 1, "checkpoint_every": 10, "executor": "sequential", "executor_fallback": None},
        "versions": VERSIONS, "git_revision": "0123456789abcdef0123456789abcdef01234567",
        "mechanism": mechanism or {"engaged": None, "evidence": "baseline",
                                   "series": {"train.local_steps": {"first": 4.0, "last": 4.0, "mean": 4.0},
                                              "train.drift": {"first": 0.5, "last": 0.25, "mean": 0.375}}},
        **(summary_extra or {}),
    }
    for key in drop:
        summary.pop(key, None)
    if "summary" not in drop:
        (path / "summary.json").write_text(json.dumps(summary))
        os.utime(path / "summary.json", (STAMP + 60 * seed, STAMP + 60 * seed))
    return path


def write_golden_results(root: Path) -> Path:
    """Every case a table must show: full cells, a single seed, a missing cell, a partly and a wholly
    diverged cell, a run without validation split, a clear winner and a gap within the noise, one-off
    server work, runs of other configurations, and runs that must only be listed as excluded."""
    suite = root / SUITE
    for seed, final in enumerate([0.70, 0.72, 0.74]):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.5, 0.6, final])
    dynafed = write_run(suite, "dynafed", "fmnist", 0.01, 0, [0.1, 0.8, 0.82, 0.85], deviations=DEVIATIONS[1:],
                        artifacts=["dynafed_synthetic.png"], server_parts={"synthesis": 3.0},
                        mechanism={"engaged": False, "evidence": "fresh models reach 12.0% (chance 10.0%)",
                                   "series": {"train.local_steps": {"first": 4.0, "last": 4.0, "mean": 4.0}}})
    from PIL import Image
    Image.new("L", (6, 4), color=128).save(dynafed / "dynafed_synthetic.png")
    # FMNIST 0.16: FedProx beats FedAvg by 10 points with a spread of 1: bold.
    # Clocks: FedProx's three runs timed CPU seconds (half their wall seconds); one of FedAvg's started
    # before the CPU clock existed and has it from round 2 only, so FedAvg's cell stays on the wall clock.
    for seed in range(3):
        write_run(suite, "fedavg", "fmnist", 0.16, seed, [0.1, 0.4, 0.5, 0.60 + 0.01 * seed], cpu_share=0.5,
                  cpu_from=2 if seed == 2 else 1)
        write_run(suite, "fedprox", "fmnist", 0.16, seed, [0.1, 0.4, 0.6, 0.70 + 0.01 * seed], cpu_share=0.5)
    # FMNIST 0.04: DynaFed leads by 2 points with a spread of 7: not bold.
    for seed, final in enumerate([0.50, 0.60]):
        write_run(suite, "fedavg", "fmnist", 0.04, seed, [0.1, 0.3, 0.4, final])
        write_run(suite, "dynafed", "fmnist", 0.04, seed, [0.1, 0.3, 0.4, final + 0.02], deviations=DEVIATIONS[1:])
    write_run(suite, "fedprox", "fmnist", 0.04, 0, [0.1, 0.3, 0.2, float("nan")])
    write_run(suite, "fedavg", "synthetic", 1.0, 0, [0.1, 0.3, 0.4, 0.5])
    write_run(suite, "fedavg", "synthetic", 1.0, 1, [0.1, 0.3, float("nan"), float("nan")], status="diverged")
    write_run(suite, "fedprox", "synthetic", 1.0, 0, [0.1, 0.3, 0.45, 0.5], has_val=False)
    write_run(suite, "fedavg", "fmnist", 0.01, 3, [0.1, 0.2, 0.3, 0.4], folder=".tmp-fedavg_fmnist_s3-4242",
              drop=("summary",))
    write_run(suite, "fedavg", "fmnist", 0.01, 4, [0.1, 0.2, 0.3, 0.4], folder="fedavg_half_written",
              drop=("summary",))
    write_run(suite, "fedavg", "fmnist", 0.01, 5, [0.1, 0.2, 0.3, 0.99], schema=0, folder="fedavg_old_schema")
    write_run(suite, "fedavg", "fmnist", 0.01, 6, [0.1, 0.2, 0.3, 0.99], drop=("timing",), folder="fedavg_no_timing")
    for name, damage in DAMAGE.items():
        damage(write_run(suite, "fedavg", "fmnist", 0.01, 8, [0.1, 0.2, 0.3, 0.99], folder=f"fedavg_{name}"))
    for lr in (0.01, 0.1):  # one seed twice under other configs: their own tables, never averaged in
        write_run(suite, "fedavg", "fmnist", 0.01, 7, [0.1, 0.2, 0.3, lr], clients={"lr": lr}, folder=f"fedavg_lr{lr}")
    (root / "tuning" / "fedprox_fmnist").mkdir(parents=True)
    (root / "tuning" / "fedprox_fmnist" / "best.toml").write_text("[algorithms.fedprox]\nmu = 0.1\n")
    return root


def _edit(name: str, change):
    def damage(path: Path):
        file = path / name
        file.write_bytes(change(file.read_bytes()))
    return damage


def _summary(change):
    def damage(path: Path):
        file = path / "summary.json"
        stamp = file.stat().st_mtime
        summary = json.loads(file.read_text())
        change(summary)
        file.write_text(json.dumps(summary))
        os.utime(file, (stamp, stamp))  # the run's date stays its own, so that the golden runs.csv holds
    return damage


# Damage a run folder can suffer, and what the report must say about it (in excluded_runs.md).
DAMAGE = {
    "cut_off": _edit("rounds.csv", lambda b: b[:-6]),  # the last line loses its end (and its newline)
    "not_numeric": _edit("rounds.csv", lambda b: b.replace(b"0,test,accuracy,0.1\n", b"0,test,accuracy,zero\n")),
    "emptied": _edit("rounds.csv", lambda b: b""),
    "header_only": _edit("rounds.csv", lambda b: b.split(b"\n")[0] + b"\n"),
    "lost_rounds": _edit("rounds.csv", lambda b: b"".join(b.splitlines(keepends=True)[:-3])),
    "short_row": _edit("timings.csv", lambda b: b.replace(b",time,client_seconds,", b",time,", 1)),
    "bad_summary": _summary(lambda s: s["final"].update(test_accuracy="high")),
    "ragged_partition": _summary(lambda s: s["partition"].update(class_counts=[[1, 2], [3]])),
}
DAMAGE_REASONS = {
    "cut_off": "rounds.csv: line 13 is cut off", "not_numeric": "rounds.csv: line 3 is not numeric",
    "emptied": "rounds.csv is empty", "header_only": "rounds.csv has a header but no rows",
    "lost_rounds": "rounds.csv ends at round 2, but summary.json's final round is 3",
    "short_row": "timings.csv: line 3 has 3 fields, not 4",
    "bad_summary": "summary.json: final is malformed", "ragged_partition": "partition.class_counts is not",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_golden_results(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    build_report(SUITE, root, out)
    return root, out


GOLDEN_FILES = ["main_table.md", "main_table.tex", "gain_over_fedavg.md", "gain_over_fedavg.tex", "best_val_table.md",
                "paper_comparison.md", "paper_comparison.tex", "mechanism.md", "cost_table.md", "cell_settings.md",
                "configurations.md", "main_table_B.md", "excluded_runs.md", "runs.csv"]


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_tables_match_golden(built, name):
    text = (built[1] / name).read_text(encoding="utf-8")
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def _bold_cells(table: str) -> int:
    return sum(line.count("| **") for line in table.splitlines() if line.startswith("|"))


def _row(table: str, first: str) -> list[str]:
    """The cells of the Markdown row whose first cell is ``first``."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{table}")


def test_excluded_runs_stay_out_of_the_averages(built):
    main = (built[1] / "main_table.md").read_text()
    fedavg = _row(main, "FedAvg")
    assert fedavg[1] == "72.00 ± 2.00 (n=3)"  # seeds 0-2 only: unfinished, damaged and other-config runs are not in
    assert fedavg[4] == "50.00 (n=1, 1 diverged)" and _row(main, "FedProx")[2] == "diverged"
    excluded = (built[1] / "excluded_runs.md").read_text()
    for folder in (".tmp-fedavg_fmnist_s3-4242", "fedavg_half_written", "fedavg_old_schema", "fedavg_no_timing"):
        assert folder in excluded
    for name, reason in DAMAGE_REASONS.items():
        assert reason in _row(excluded, f"fedavg_{name}")[3], name


def test_bold_only_beyond_the_seeds_noise(built):
    main = (built[1] / "main_table.md").read_text()
    # 0.16: FedProx 71 ± 1 vs FedAvg 61 ± 1 (n=3 each): bold. 0.04: DynaFed 57 ± 7 vs 55 ± 7: not bold.
    # 0.01: DynaFed's 85 is one seed: never bold, however far ahead.
    assert _row(main, "FedProx")[3] == "**71.00 ± 1.00 (n=3)**"
    assert _row(main, "DynaFed")[2] == "57.00 ± 7.07 (n=2)" and _row(main, "DynaFed")[1] == "85.00 (n=1)‡"
    assert _bold_cells(main) == 1


def test_winner_rule():
    s = lambda mean, std, n: Stats(n, mean, std)  # noqa: E731
    assert winner({"a": s(71, 1, 3), "b": s(61, 1, 3)}) == "a"
    assert winner({"a": s(71, 1, 3), "b": s(70.5, 0.2, 3)}) is None  # 0.5 points < the larger std
    assert winner({"a": s(90, float("nan"), 1), "b": s(61, 1, 3)}) is None  # one seed
    assert winner({"a": s(71, 1, 3)}) is None  # nothing to beat


def test_gain_over_fedavg_is_paired_and_beside_the_paper(built):
    gain = (built[1] / "gain_over_fedavg.md").read_text()
    # FedProx − FedAvg at 0.16: +10 in every seed (paper: 89.54 − 89.15 ... from the reference table)
    reference = pd.read_csv(REPO / "reports" / "reference" / "dynafed_table.csv")
    paper = reference.set_index(["algorithm", "dataset", "alpha"])["accuracy_mean"]
    cells = _row(gain, "FedProx")
    assert cells[3] == f"+10.00 ± 0.00 / {paper['fedprox', 'fmnist', 0.16] - paper['fedavg', 'fmnist', 0.16]:+.2f}"
    # DynaFed at 0.01 ran seed 0 only: paired with FedAvg's seed 0 (70%), not with FedAvg's mean (72%).
    # Its mechanism did not engage there, so the gain carries the mark the accuracy tables give it.
    assert _row(gain, "DynaFed")[1].startswith("+15.00 (n=1)‡ / ")


def test_cost_table_uses_cpu_seconds_only_where_every_run_of_the_cell_has_them(built):
    cost = (built[1] / "cost_table.md").read_text()
    rows = {}
    for line in cost.splitlines():
        if "α=0.16" in line:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[1]] = cells
    # FedProx: CPU seconds, half the wall ones. Seed s's round r took 1 + s + r/4 wall seconds (r = 1..3),
    # its clients 0.5 + s: CPU means over rounds and seeds 1.25 and 0.75, CPU total 0.5 x (4.5 + 3s) -> 3.75.
    assert rows["FedProx"][3:6] == ["CPU", "1.25", "0.75"] and rows["FedProx"][-1] == "3.75", rows["FedProx"]
    # FedAvg: one run lacks round 1's CPU seconds, so the whole cell is on the wall clock (total: the
    # summaries' wall totals, 3 (1 + s) -> 6.00)
    assert rows["FedAvg"][3:6] == ["wall", "2.50", "1.50"] and rows["FedAvg"][-1] == "6.00", rows["FedAvg"]
    assert "where every run of the cell ran on a CPU and recorded it, else on the wall clock" in cost


def test_cpu_clock_only_for_runs_on_a_cpu():
    # a GPU run's process CPU seconds leave out the device's work: it stays on the wall clock
    timings = pd.DataFrame({"run": ["on_cpu", "on_cpu", "on_gpu", "on_gpu"], "round": 1, "split": "time",
                            "metric": ["round_seconds", "round_cpu_seconds"] * 2, "value": 1.0})
    runs = pd.DataFrame({"run": ["on_cpu", "on_gpu"], "config.device": ["cpu", "cuda"]})
    assert cpu_clocked(timings, runs) == {"on_cpu"}


def test_a_resumed_run_that_redid_one_off_work_keeps_it_one_off():
    rounds = pd.Series({"a": 30, "b": 30, "c": 30})
    assert is_one_off(pd.Series({"a": 1, "b": 1, "c": 2}), rounds)  # c resumed and regenerated once more
    assert not is_one_off(pd.Series({"a": 6, "b": 6, "c": 6}), rounds)  # every 5 rounds: recurring
    assert not is_one_off(pd.Series({"a": 1, "b": 0, "c": 0}), pd.Series({"a": 1, "b": 1, "c": 1}))


def test_cost_table_separates_one_off_work(built):
    cost = (built[1] / "cost_table.md").read_text()
    assert "| synthesis s once |" in cost
    fedavg = _row(cost, "Fashion-MNIST α=0.01")  # the setting's first row
    assert fedavg[1] == "FedAvg" and fedavg[6] == "0.50" and fedavg[7] == "–"  # no synthesis: "–", not 0
    for line in cost.splitlines():
        if "| DynaFed |" in line and "α=0.01" in line:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            # round time without the 3 s synthesis: 1.5 on average, not 2.5; synthesis is its total
            assert cells[3:8] == ["wall", "1.50", "0.50", "0.50", "3.00"], cells
            break
    else:
        raise AssertionError(cost)


def test_provenance_on_the_page_and_under_every_table(built):
    out = built[1]
    for name in GOLDEN_FILES:
        if name.endswith(".md") and name != "excluded_runs.md":
            text = (out / name).read_text()
            assert "Provenance: suite golden (benchmarks/experiments/suites/golden.toml)" in text, name
            assert "git 0123456789ab; torch 2.13.0+cpu; CPU AMD EPYC (AVX2)" in text, name
    # the runs' dates (a summary is `seed` minutes younger than seed 0's), never the build's
    assert "finished 2025-01-02 03:04 UTC to 2025-01-02 03:06 UTC" in (out / "main_table.md").read_text()
    page = (out / "index.html").read_text()
    assert '<section id="provenance">' in page  # the page counts configurations B and C (seed 7) too
    assert "<th scope=\"row\">Newest run finished</th><td>2025-01-02 03:11 UTC</td>" in page


def test_rebuild_is_byte_identical(built, tmp_path):
    root, first = built
    build_report(SUITE, root, tmp_path)
    _assert_same_tree(first, tmp_path)


def test_rebuild_from_csvs_is_byte_identical_without_results(built, tmp_path):
    _, first = built
    build_from_csv(SUITE, first, tmp_path)
    _assert_same_tree(first, tmp_path)
    runs = pd.read_csv(first / "runs.csv", keep_default_na=False)
    assert len(runs) == len([p for p in (built[0] / SUITE).iterdir() if p.is_dir()])
    assert list(runs.columns[:14]) == ["suite", "run", "variant", "algorithm", "row_label", "dataset", "column_label",
                                       "scheme", "alpha", "level", "seed", "partition_seed", "final_round",
                                       "final_test_accuracy"]
    curves = pd.read_csv(first / "curves.csv")
    assert list(curves.columns) == ["run", "round", "split", "metric", "value"]
    assert set(curves["run"]) == set(runs.loc[runs["excluded"] == "", "run"])


def _assert_same_tree(first: Path, second: Path, figures: bool = True):
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    if figures:
        assert any(f.suffix == ".svg" for f in files) and any(f.suffix == ".png" for f in files)
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_runs_that_differ_in_a_non_axis_setting_are_never_averaged_or_ranked(tmp_path):
    """A 1-round ConvNet-128 FedAvg beside a 3-round ConvNet-32 FedProx: two configurations, two tables."""
    suite = tmp_path / "results" / "mixed"
    write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.9], config={"model": {"width": 128}})
    write_run(suite, "fedavg", "fmnist", 0.01, 1, [0.1, 0.91], config={"model": {"width": 128}})
    write_run(suite, "fedprox", "fmnist", 0.01, 0, [0.1, 0.2, 0.3, 0.4])
    build_report("mixed", tmp_path / "results", tmp_path / "out")
    main = (tmp_path / "out" / "main_table.md").read_text()
    assert "FedAvg" in main and "FedProx" not in main and not _bold_cells(main)
    other = (tmp_path / "out" / "main_table_B.md").read_text()
    assert "FedProx" in other and "FedAvg" not in other
    assert "differs from A in model.width=32 (A: 128); rounds=3 (A: 1)" in other
    configurations = (tmp_path / "out" / "configurations.md").read_text()
    assert _row(configurations, "B")[4] == "model.width=32 (A: 128); rounds=3 (A: 1)"


def test_a_stray_override_run_leaves_the_legitimate_cell_in_the_table(tmp_path):
    """`run --set rounds=2` beside a sweep's seed 0: the sweep's cell keeps its three seeds."""
    suite = tmp_path / "results" / "quick"
    for seed in range(3):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.5, 0.6, 0.70 + 0.01 * seed])
        write_run(suite, "fedprox", "fmnist", 0.01, seed, [0.1, 0.5, 0.6, 0.705 + 0.01 * seed])
    write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.5, 0.55], folder="fedavg_override_rounds2")
    build_report("quick", tmp_path / "results", tmp_path / "out")
    main = (tmp_path / "out" / "main_table.md").read_text()
    assert _row(main, "FedAvg")[1] == "71.00 ± 1.00 (n=3)" and _row(main, "FedProx")[1] == "71.50 ± 1.00 (n=3)"
    assert not _bold_cells(main)  # a half-point lead with a 1-point spread is noise
    assert "rounds=2 (A: 3)" in (tmp_path / "out" / "configurations.md").read_text()
    assert "fedavg_override_rounds2" not in (tmp_path / "out" / "excluded_runs.md").read_text()


def test_hyperparameter_variants_are_rows_and_per_dataset_settings_split_nothing(tmp_path):
    suite = tmp_path / "results" / "hp"
    for seed in range(2):
        write_run(suite, "fedprox", "fmnist", 0.01, seed, [0.1, 0.6], config={"algorithms": {"fedprox": {"mu": 0.01}}})
    write_run(suite, "fedprox", "fmnist", 0.01, 0, [0.1, 0.5], config={"algorithms": {"fedprox": {"mu": 0.1}}},
              folder="fedprox_mu0.1")
    # a suite's [[when]] rule: DynaFed keeps 2 images per class on CIFAR-100, 10 elsewhere
    write_run(suite, "dynafed", "fmnist", 0.01, 0, [0.1, 0.7], config={"algorithms": {"dynafed": {"ipc": 10}}})
    write_run(suite, "dynafed", "cifar100", 0.01, 0, [0.1, 0.05], config={"algorithms": {"dynafed": {"ipc": 2}}})
    build_report("hp", tmp_path / "results", tmp_path / "out")
    main = (tmp_path / "out" / "main_table.md").read_text()
    assert _row(main, "FedProx (mu=0.01)")[1] == "60.00 ± 0.00 (n=2)"
    assert _row(main, "FedProx (mu=0.1)")[1] == "50.00 (n=1)"
    assert _row(main, "DynaFed")[1:] == ["70.00 (n=1)", "5.00 (n=1)"]
    assert not (tmp_path / "out" / "configurations.md").exists()


def test_a_copied_run_counts_once(tmp_path):
    suite = tmp_path / "results" / "dup"
    for seed in range(2):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.6 + 0.1 * seed])
    write_run(suite, "fedavg", "fmnist", 0.01, 1, [0.1, 0.7], folder="zz_copy_of_seed1")
    build_report("dup", tmp_path / "results", tmp_path / "out")
    assert _row((tmp_path / "out" / "main_table.md").read_text(), "FedAvg")[1] == "65.00 ± 7.07 (n=2)"
    reason = _row((tmp_path / "out" / "excluded_runs.md").read_text(), "zz_copy_of_seed1")[3]
    assert reason.startswith("duplicate of fedavg_fmnist_balanced_dirichlet-0.01_s1_0123456789")


def test_validation_only_runs_report_validation_accuracy(tmp_path):
    suite = tmp_path / "results" / "ablation"
    path = write_run(suite, "dynafed", "fmnist", 0.01, 0, [0.1, 0.6], config={"eval_test": False})
    summary = json.loads((path / "summary.json").read_text())
    summary["final"] = {"round": 1, "test_accuracy": None, "val_accuracy": 0.6}
    summary["best_val"] = {"round": 1, "val_accuracy": 0.6, "test_accuracy": None}
    (path / "summary.json").write_text(json.dumps(summary))
    rounds = (path / "rounds.csv").read_text().splitlines(keepends=True)
    (path / "rounds.csv").write_text("".join(line for line in rounds if ",test," not in line))
    build_report("ablation", tmp_path / "results", tmp_path / "out")
    main = (tmp_path / "out" / "main_table.md").read_text()
    assert main.startswith("**Final validation accuracy (%).**") and _row(main, "DynaFed")[1] == "60.00 (n=1)"
    assert not (tmp_path / "out" / "gain_over_fedavg.md").exists()


def test_summary_date_wins_over_the_file_time(tmp_path):
    suite = tmp_path / "results" / "dated"
    write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.6],
              summary_extra={"finished_at": "2024-05-06T07:08:09+02:00"})
    build_report("dated", tmp_path / "results", tmp_path / "out")
    assert "finished 2024-05-06 05:08 UTC" in (tmp_path / "out" / "main_table.md").read_text()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets, self.sections = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.targets += [attrs[k] for k in ("href", "src") if k in attrs and not attrs[k].startswith("#")]
        if tag == "section":
            self.sections.append(attrs["id"])


def _index_links(out: Path) -> _Links:
    parser = _Links()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return parser


def test_index_links_every_output_and_every_link_resolves(built):
    root, out = built
    parser = _index_links(out)
    assert parser.sections == ["provenance", "main", "gain", "best-val", "paper", "mechanism", "cost", "cell-settings",
                               "configurations", "curves", "loss-time", "partitions", "synthetic", "tuned", "excluded"]
    assert all((out / target).is_file() for target in parser.targets), parser.targets
    linked = set(parser.targets)
    for slug in ("fmnist_balanced_dirichlet_0.01", "synthetic_balanced_dirichlet_1"):
        for kind in ("curves", "partition"):
            assert {f"figures/{kind}_{slug}.png", f"figures/{kind}_{slug}.svg"} <= linked
    for stem in ("curves_all", "loss_all", "accuracy_time"):
        assert {f"figures/{stem}.png", f"figures/{stem}.svg"} <= linked
    assert {"runs.csv", "curves.csv", "partitions.csv", "main_table_B.md", "tuning/fedprox_fmnist/best.toml"} <= linked
    # several settings also get one page of every curve, before the per-setting figures
    assert parser.targets.index("figures/curves_all.svg") < parser.targets.index(
        "figures/curves_fmnist_balanced_dirichlet_0.01.svg")
    run = "dynafed_fmnist_balanced_dirichlet-0.01_s0_0123456789"
    copied = out / "figures" / "synthetic" / f"{run}.png"
    assert copied.read_bytes() == (root / SUITE / run / "dynafed_synthetic.png").read_bytes()
    assert "mu = 0.1" in (out / "index.html").read_text()


def test_tall_synthetic_grids_scroll_instead_of_filling_the_page(tmp_path):
    suite = tmp_path / "results" / "tall"
    run = write_run(suite, "dynafed", "cifar100", 0.01, 0, [0.1, 0.05], artifacts=["dynafed_synthetic.png"])
    from PIL import Image
    Image.new("L", (35, 400), color=128).save(run / "dynafed_synthetic.png")
    build_report("tall", tmp_path / "results", tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert f'<div class="strip"><img src="figures/synthetic/{run.name}.png"' in page
    assert 'width="35" height="400"' in page


def test_cli_never_imports_torch_and_omits_absent_sections(tmp_path):
    results = tmp_path / "results"
    write_run(results / "tiny", "fedavg", "synthetic", 0.5, 0, [0.1, 0.2])
    script = ("import runpy, sys\n"
              f"sys.argv = ['reports', 'tiny', '--out', {str(tmp_path / 'out')!r}]\n"
              "try:\n    runpy.run_module('reports', run_name='__main__')\n"
              "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
              "print('torch' in sys.modules)\n")
    env = {**os.environ, "HETBENCH_RESULTS": str(results)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    sections = _index_links(tmp_path / "out").sections
    assert "tuned" not in sections and "synthetic" not in sections and "configurations" not in sections


def _one_line_error(capsys, argv, *needles):
    assert reports_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    _one_line_error(capsys, ["nosuch", "--results", str(tmp_path)], "nosuch")
    (tmp_path / "reference").mkdir()
    _one_line_error(capsys, ["reference", "--results", str(tmp_path)], "--out")
    write_run(tmp_path / "ok", "fedavg", "fmnist", 0.01, 0, [0.1, 0.2])
    (tmp_path / "a_file").write_text("x")
    _one_line_error(capsys, ["ok", "--results", str(tmp_path), "--out", str(tmp_path / "a_file")], "is a file")
    _one_line_error(capsys, ["ok", "--results", str(tmp_path), "--out", str(tmp_path / "a_file" / "sub")],
                    "cannot create")
    _one_line_error(capsys, ["ok", "--from-csv", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "not a folder")
    _one_line_error(capsys, ["ok", "--from-csv", str(tmp_path), "--out", str(tmp_path / "o")], "has no runs.csv")
    assert reports_main(["ok", "--results", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["other", "--from-csv", str(tmp_path / "rep"), "--out", str(tmp_path / "o")],
                    "holds suite ok, not other")
    runs = tmp_path / "rep" / "runs.csv"
    runs.write_text(runs.read_text().replace(",0.2,", ",high,", 1))
    _one_line_error(capsys, ["ok", "--from-csv", str(tmp_path / "rep"), "--out", str(tmp_path / "o")],
                    "runs.csv: column 'final_test_accuracy'")


def test_damaged_results_never_stop_the_cli(tmp_path, capsys):
    suite = tmp_path / "results" / "damaged"
    write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.5, 0.6, 0.7])
    for name, damage in DAMAGE.items():
        damage(write_run(suite, "fedavg", "fmnist", 0.01, 1, [0.1, 0.2, 0.3, 0.99], folder=f"fedavg_{name}"))
    assert reports_main(["damaged", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    assert _row((tmp_path / "out" / "main_table.md").read_text(), "FedAvg")[1] == "70.00 (n=1)"


def test_committed_report_rebuilds_when_results_are_absent(built, tmp_path, monkeypatch, capsys):
    """`make report SUITE=x` in a fresh clone: no results/x, but reports/x holds its CSVs."""
    import reports.__main__ as cli
    committed = tmp_path / "repo" / "reports" / SUITE
    build_from_csv(SUITE, built[1], committed)
    before = {p: p.read_bytes() for p in committed.rglob("*") if p.is_file()}
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setenv("HETBENCH_RESULTS", str(tmp_path / "no_results"))
    assert reports_main([SUITE]) == 0
    assert "rebuilding from" in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in committed.rglob("*") if p.is_file()}


def test_round_ticks_fall_on_evaluated_rounds():
    assert round_ticks([0, 5, 10, 15, 20, 25, 30]) == [0, 5, 10, 15, 20, 25, 30]
    ticks = round_ticks(list(range(0, 201)))
    assert ticks[0] == 0 and ticks[-1] == 200 and len(ticks) <= 11
    ticks = round_ticks([0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 50])
    assert ticks[-1] == 50 and set(ticks) <= {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 50}


def test_a_panel_shows_chance_paper_and_every_method():
    import matplotlib
    from matplotlib.figure import Figure

    from reports.figures import RC, _draw
    points = pd.DataFrame({"run": ["a"] * 3, "round": [0, 5, 10], "x": [0.0, 5.0, 10.0], "y": [10.0, 50.0, 60.0]})
    same = points.assign(run="b")
    panel = Panel(0, 0, "t", [Series(0, "FedAvg", points, paper=74.5), Series(1, "FedProx", same, paper=76.9)],
                  chance=10.0)
    with matplotlib.rc_context(RC):
        ax = Figure().add_subplot()
        _draw(ax, panel, rounds_axis=True, markersize=4, base_width=2.6)
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == ["0", "5", "10", "paper"]
        widths = [line.get_linewidth() for line in ax.get_lines()[:2]]
        assert widths[0] > widths[1]  # FedAvg, drawn first and wider, shows around FedProx drawn on top of it
        assert any(list(line.get_ydata()) == [10.0, 10.0] for line in ax.get_lines())  # chance
        assert {tuple(line.get_ydata()) for line in ax.get_lines()} >= {(74.5,), (76.9,)}  # the paper's marks


def test_algorithms_differ_by_more_than_colour():
    looks = [line_style(i) for i in range(12)]
    assert len({(s["linestyle"], s["marker"]) for s in looks}) == 12
    assert len({s["color"] for s in looks[:8]}) == 8
    assert all(line_width(i) > line_width(i + 1) for i in range(7))


@pytest.mark.parametrize("case", ["empty", "only_diverged", "only_damaged"])
def test_degenerate_suites_still_build(tmp_path, case):
    suite = tmp_path / "results" / case
    suite.mkdir(parents=True)
    if case == "only_diverged":
        write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, float("nan")], status="diverged")
    if case == "only_damaged":
        DAMAGE["emptied"](write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.2]))
    build_report(case, tmp_path / "results", tmp_path / "out")
    excluded = (tmp_path / "out" / "excluded_runs.md").read_text()
    assert ("No runs were excluded." in excluded) == (case == "empty")
    if case == "only_diverged":
        assert _row((tmp_path / "out" / "main_table.md").read_text(), "FedAvg")[1] == "diverged"
    build_from_csv(case, tmp_path / "out", tmp_path / "again")
    _assert_same_tree(tmp_path / "out", tmp_path / "again", figures=False)


def test_a_rebuild_deletes_figures_it_did_not_write_and_keeps_the_rest(built, tmp_path):
    root, first = built
    out = tmp_path / "report"
    shutil.copytree(first, out)
    stale = [out / "figures" / "synthetic" / "dynafed_old_run.png", out / "figures" / "gone" / "curves_old.svg"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stale")
    notes = out / "notes.txt"  # not the report's: outside its figures folder, never touched
    notes.write_text("mine")
    build_report(SUITE, root, out)
    assert not any(p.exists() for p in stale) and not (out / "figures" / "gone").exists()
    notes.unlink()
    _assert_same_tree(first, out)


@pytest.mark.parametrize("cpu_from, clock", [(1, "CPU time"), (2, "wall-clock time")])
def test_accuracy_against_time_uses_cpu_seconds_only_when_every_run_has_them(tmp_path, cpu_from, clock):
    """CPU seconds exclude the time a paused sweep sat still; one run without them (here: resumed from a
    checkpoint older than the CPU clock) puts the whole figure on the wall clock, never a mix."""
    suite = tmp_path / "results" / "clocked"
    write_run(suite, "fedavg", "fmnist", 0.01, 0, [0.1, 0.5, 0.6], cpu_share=0.5)
    write_run(suite, "fedprox", "fmnist", 0.01, 0, [0.1, 0.5, 0.7], cpu_share=0.5, cpu_from=cpu_from)
    build_report("clocked", tmp_path / "results", tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert f"accuracy against {clock}, every setting" in index or f"accuracy against {clock}" in index
    svg = (tmp_path / "out" / "figures" / "accuracy_time.svg").read_text()
    assert f"{clock} (s)" in svg


def test_time_axis_accumulates_the_chosen_clock():
    from reports.build import _timed
    from reports.tables import on_clock

    curves = pd.DataFrame({"run": "r", "round": [1, 1, 2, 2], "split": "time",
                           "metric": ["round_seconds", "round_cpu_seconds"] * 2, "value": [4.0, 1.0, 6.0, 2.0]})
    accuracy = pd.DataFrame({"run": "r", "round": [0, 1, 2], "x": [0.0, 1.0, 2.0], "y": [10.0, 50.0, 60.0]})
    assert list(_timed(on_clock(curves, {"r"}), accuracy)[0]["x"]) == [0.0, 1.0, 3.0]
    assert list(_timed(on_clock(curves, set()), accuracy)[0]["x"]) == [0.0, 4.0, 10.0]


def test_best_validation_table_says_so_when_it_would_repeat_the_main_table(tmp_path):
    """A suite evaluated only at its end (quick) has its best validation round at its final round."""
    suite = tmp_path / "results" / "ends"
    for seed in range(2):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.5 + 0.01 * seed],
                  mechanism={"engaged": False, "evidence": "test"})
    build_report("ends", tmp_path / "results", tmp_path / "out")
    best = (tmp_path / "out" / "best_val_table.md").read_text()
    assert "would repeat the main table" in best and "| FedAvg" not in best and "‡" not in best
    assert "| FedAvg" in (tmp_path / "out" / "main_table.md").read_text()


def test_a_suite_s_deviations_get_a_table_a_footnote_and_survive_a_rebuild_from_csvs(tmp_path):
    from benchmarks.store.schema import write_deviations
    suite = tmp_path / "results" / "dev"
    for seed in range(2):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.6 + 0.1 * seed])
    write_deviations(suite / "deviations.csv", [
        {"algorithm": "DynaFed", "setting": "ipc", "ours": "10 (fmnist); 2 (cifar100)", "official": "15",
         "why": "budget cut, not ablated"}])
    build_report("dev", tmp_path / "results", tmp_path / "out")
    table = (tmp_path / "out" / "deviations.md").read_text()
    assert _row(table, "DynaFed") == ["DynaFed", "ipc", "10 (fmnist); 2 (cifar100)", "15", "budget cut, not ablated"]
    note = "Hyperparameters away from the official code's: DynaFed: ipc 10 (fmnist); 2 (cifar100) (official 15)."
    assert note in (tmp_path / "out" / "main_table.md").read_text()
    assert 'id="deviations"' in (tmp_path / "out" / "index.html").read_text()
    build_from_csv("dev", tmp_path / "out", tmp_path / "again")
    _assert_same_tree(tmp_path / "out", tmp_path / "again")


def test_without_deviations_csv_the_report_has_no_deviations_section(built):
    _, out = built
    assert not (out / "deviations.md").exists() and "official code's" not in (out / "main_table.md").read_text()


def test_a_cell_marked_not_engaged_shows_the_failing_seed_s_evidence(tmp_path):
    suite = tmp_path / "results" / "mech"
    for seed, engaged in ((0, True), (1, False)):
        path = write_run(suite, "dynafed", "fmnist", 0.01, seed, [0.1, 0.6])
        summary = json.loads((path / "summary.json").read_text())
        summary["mechanism"] = {"engaged": engaged, "evidence": f"seed {seed} evidence", "series": {}}
        (path / "summary.json").write_text(json.dumps(summary))
    build_report("mech", tmp_path / "results", tmp_path / "out")
    row = _row((tmp_path / "out" / "mechanism.md").read_text(), "DynaFed")
    assert row[2] == "**NO (1 of 2 seeds)**" and row[3] == "seed 1 evidence"


def test_new_run_folders_joined_with_an_earlier_report_s_runs_give_the_full_report(built, tmp_path, capsys):
    """A grid finished on a second machine that kept nothing of the first but its report (CSVs, image grids,
    tuner files): the joined report is the one all the finished folders would give, byte for byte."""
    root, first = built
    runs = pd.read_csv(first / "runs.csv", keep_default_na=False)
    done = runs[(runs["excluded"] == "") | (runs["status"] == "diverged")]
    finished = sorted(done["run"])
    full = tmp_path / "full"
    shutil.copytree(root, full)
    for path in (full / SUITE).iterdir():  # unfinished and damaged folders have nothing to hand on
        if path.is_dir() and path.name not in finished:
            shutil.rmtree(path)
    build_report(SUITE, full, tmp_path / "expected")
    imaged = "dynafed_fmnist_balanced_dirichlet-0.01_s0_0123456789"  # a carried run brings its image grid
    diverged = done.loc[done["status"] == "diverged", "run"].iloc[0]  # and a diverged one its row
    earlier = set(finished[::2]) | {imaged, diverged}
    redone = next(r for r in finished[::2] if r not in (imaged, diverged))  # redone here: its folder wins
    old, new = tmp_path / "old", tmp_path / "new"
    for results, drop in ((old, set(finished) - earlier), (new, earlier - {redone})):
        shutil.copytree(full, results)
        for name in drop:
            shutil.rmtree(results / SUITE / name)
    shutil.rmtree(new / "tuning")  # the tuner's files survive in the earlier report only
    build_report(SUITE, old, tmp_path / "published")
    assert reports_main([SUITE, "--results", str(new), "--published", str(tmp_path / "published"),
                         "--out", str(tmp_path / "joined")]) == 0
    assert f"{len(earlier) - 1} runs taken from {tmp_path / 'published' / 'runs.csv'}" in capsys.readouterr().err
    _assert_same_tree(tmp_path / "expected", tmp_path / "joined")
    assert "Tuned hyperparameters" in (tmp_path / "joined" / "index.html").read_text()


def test_only_finished_runs_are_carried_and_they_replace_a_damaged_folder(tmp_path):
    old = tmp_path / "old" / "carry"
    ids = [write_run(old, "fedavg", "fmnist", 0.01, seed, [0.1, 0.5 + 0.1 * seed]).name for seed in (0, 1)]
    # A crashed run under a setting no other run has: its row is not carried, nor is its setting's column.
    write_run(old, "fedavg", "fmnist", 0.01, 3, [0.1, 0.2], config={"knob": 1}, folder=".tmp-crashed", drop=("summary",))
    build_report("carry", tmp_path / "old", tmp_path / "published")
    assert "config.knob" in pd.read_csv(tmp_path / "published" / "runs.csv").columns
    new = tmp_path / "new" / "carry"
    write_run(new, "fedavg", "fmnist", 0.01, 1, [0.1, 0.6], drop=("summary",))  # cut off here, whole there
    ids.append(write_run(new, "fedavg", "fmnist", 0.01, 2, [0.1, 0.7]).name)
    build_report("carry", tmp_path / "new", tmp_path / "joined", published=tmp_path / "published")
    joined = pd.read_csv(tmp_path / "joined" / "runs.csv", keep_default_na=False)
    assert list(joined["run"]) == ids and (joined["excluded"] == "").all() and "config.knob" not in joined.columns
    assert _row((tmp_path / "joined" / "main_table.md").read_text(), "FedAvg")[1].endswith("(n=3)")
    # Every cell published, none run here yet: the report is the earlier one's finished runs.
    build_report("carry", tmp_path / "nothing", tmp_path / "alone", published=tmp_path / "published")
    assert list(pd.read_csv(tmp_path / "alone" / "runs.csv")["run"]) == ids[:2]


def test_published_is_not_for_a_rebuild_from_csvs_and_must_be_a_report(built, tmp_path, capsys):
    _one_line_error(capsys, [SUITE, "--from-csv", str(built[1]), "--published", str(built[1]), "--out",
                             str(tmp_path / "o")], "--published: not with --from-csv")
    _one_line_error(capsys, [SUITE, "--results", str(built[0]), "--published", str(tmp_path / "none"), "--out",
                             str(tmp_path / "o")], "--published", "is not a folder")
    (tmp_path / "half").mkdir()
    shutil.copy(built[1] / "runs.csv", tmp_path / "half" / "runs.csv")
    _one_line_error(capsys, [SUITE, "--results", str(built[0]), "--published", str(tmp_path / "half"), "--out",
                             str(tmp_path / "o")], "--published", "has no curves.csv")
    assert not (tmp_path / "o").exists()

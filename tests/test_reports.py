"""The report builder on hand-written results folders: tables against golden files, exclusions,
byte-identical rebuilds, links of index.html, and the promise that it never imports torch.

Regenerate the golden files with ``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_reports.py``
and review the diff before keeping it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmarks.store.schema import SCHEMA
from reports import build_report
from reports.__main__ import main as reports_main
from reports.figures import line_style

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "reports"
SUITE = "golden"
# What the registries declare, as the runner records it in summary.json.
TITLES = {"fedavg": "FedAvg", "fedprox": "FedProx", "feddf": "FedDF", "fedgen": "FedGen", "dynafed": "DynaFed",
          "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
DEVIATIONS = ["partition.clients=4 (paper 80)", "rounds=3 (paper 200)"]


def write_run(suite_dir: Path, algorithm: str, dataset: str, alpha: float, seed: int, test_curve: list[float], *,
              has_val: bool = True, status: str = "complete", schema: int = SCHEMA, deviations=DEVIATIONS,
              artifacts=(), server_parts: dict | None = None, folder: str | None = None, drop=(),
              clients: dict | None = None, mechanism: dict | None = None) -> Path:
    """One run folder in the documented results format; ``test_curve`` holds rounds 0..R."""
    config = {"algorithm": algorithm, "seed": seed, "rounds": len(test_curve) - 1,
              "dataset": {"name": dataset}, "partition": {"scheme": "balanced_dirichlet", "alpha": alpha,
                                                         "clients": 4, "seed": seed},
              "clients": clients or {"lr": 0.001}}
    run_id = f"{algorithm}_{dataset}_balanced_dirichlet-{alpha:g}_s{seed}_0123456789"
    path = suite_dir / (folder or run_id)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    last = len(test_curve) - 1
    with open(path / "rounds.csv", "w") as fh:
        fh.write("round,split,metric,value\n")
        for rnd, acc in enumerate(test_curve):
            fh.write(f"{rnd},val,accuracy,{acc!r}\n{rnd},test,accuracy,{acc!r}\n")
    with open(path / "timings.csv", "w") as fh:
        fh.write("round,split,metric,value\n")
        for rnd in range(1, last + 1):
            fh.write(f"{rnd},time,round_seconds,{1.0 + seed}\n{rnd},time,client_seconds,{0.5 + seed}\n"
                     f"{rnd},time,server_seconds,{0.25 * rnd}\n{rnd},time,eval_seconds,0.125\n")
            for part, seconds in (server_parts or {}).items():
                if rnd == 1:
                    fh.write(f"{rnd},time,server_{part}_seconds,{seconds}\n")
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
        "mechanism": mechanism or {"engaged": None, "evidence": "baseline",
                                   "series": {"train.local_steps": {"first": 4.0, "last": 4.0, "mean": 4.0},
                                              "train.drift": {"first": 0.5, "last": 0.25, "mean": 0.375}}},
    }
    for key in drop:
        summary.pop(key, None)
    if "summary" not in drop:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def write_golden_results(root: Path) -> Path:
    """Every case a table must show: full cells, a single seed, a missing cell, a partly and a wholly
    diverged cell, a run without validation split, and runs that must only be listed as excluded."""
    suite = root / SUITE
    for seed, final in enumerate([0.70, 0.72, 0.74]):
        write_run(suite, "fedavg", "fmnist", 0.01, seed, [0.1, 0.5, 0.6, final])
    dynafed = write_run(suite, "dynafed", "fmnist", 0.01, 0, [0.1, 0.8, 0.82, 0.85], deviations=DEVIATIONS[1:],
                        artifacts=["dynafed_synthetic.png"], server_parts={"synthesis": 3.0},
                        mechanism={"engaged": False, "evidence": "fresh models reach 12.0% (chance 10.0%)",
                                   "series": {"train.local_steps": {"first": 4.0, "last": 4.0, "mean": 4.0}}})
    from PIL import Image
    Image.new("L", (6, 4), color=128).save(dynafed / "dynafed_synthetic.png")
    write_run(suite, "fedavg", "synthetic", 1.0, 0, [0.1, 0.3, 0.4, 0.5])
    write_run(suite, "fedavg", "synthetic", 1.0, 1, [0.1, 0.3, float("nan"), float("nan")], status="diverged")
    write_run(suite, "fedprox", "synthetic", 1.0, 0, [0.1, 0.3, 0.45, 0.5], has_val=False)
    write_run(suite, "fedprox", "fmnist", 0.04, 0, [0.1, 0.3, 0.2, float("nan")])
    write_run(suite, "fedavg", "fmnist", 0.01, 3, [0.1, 0.2, 0.3, 0.4], folder=".tmp-fedavg_fmnist_s3-4242",
              drop=("summary",))
    write_run(suite, "fedavg", "fmnist", 0.01, 4, [0.1, 0.2, 0.3, 0.4], folder="fedavg_half_written",
              drop=("summary",))
    write_run(suite, "fedavg", "fmnist", 0.01, 5, [0.1, 0.2, 0.3, 0.99], schema=0, folder="fedavg_old_schema")
    write_run(suite, "fedavg", "fmnist", 0.01, 6, [0.1, 0.2, 0.3, 0.99], drop=("timing",), folder="fedavg_no_timing")
    for lr in (0.01, 0.1):  # one seed twice under different configs: neither may be averaged in
        write_run(suite, "fedavg", "fmnist", 0.01, 7, [0.1, 0.2, 0.3, lr], clients={"lr": lr}, folder=f"fedavg_lr{lr}")
    (root / "tuning" / "fedprox_fmnist").mkdir(parents=True)
    (root / "tuning" / "fedprox_fmnist" / "best.toml").write_text("[algorithms.fedprox]\nmu = 0.1\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_golden_results(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    build_report(SUITE, root, out)
    return root, out


@pytest.mark.parametrize("name", ["main_table.md", "mechanism.md", "cell_settings.md", "main_table.tex", "best_val_table.md", "paper_comparison.md",
                                  "paper_comparison.tex", "cost_table.md", "excluded_runs.md"])
def test_tables_match_golden(built, name):
    text = (built[1] / name).read_text(encoding="utf-8")
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_excluded_runs_stay_out_of_the_averages(built):
    main = (built[1] / "main_table.md").read_text()
    assert "| FedAvg | 72.00 ± 2.00 |" in main  # seeds 0-2 only: the unfinished and older runs are not in
    assert "diverged" in main and "–" in main and "(n=1)" in main
    excluded = (built[1] / "excluded_runs.md").read_text()
    for folder in (".tmp-fedavg_fmnist_s3-4242", "fedavg_half_written", "fedavg_old_schema", "fedavg_no_timing",
                   "fedavg_lr0.01", "fedavg_lr0.1"):
        assert folder in excluded


def test_rebuild_is_byte_identical(built, tmp_path):
    root, first = built
    build_report(SUITE, root, tmp_path)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert any(f.suffix == ".svg" for f in files) and any(f.suffix == ".png" for f in files)
    for rel in files:
        assert (first / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


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
    assert parser.sections == ["main", "mechanism", "best-val", "paper", "cost", "cell-settings", "curves", "partitions", "synthetic", "tuned",
                               "excluded"]
    assert all((out / target).is_file() for target in parser.targets), parser.targets
    linked = set(parser.targets)
    for slug in ("fmnist_balanced_dirichlet_0.01", "synthetic_balanced_dirichlet_1"):
        for kind in ("curves", "partition"):
            assert {f"figures/{kind}_{slug}.png", f"figures/{kind}_{slug}.svg"} <= linked
    # several settings also get one page of every curve, before the per-setting figures
    assert {"figures/curves_all.png", "figures/curves_all.svg"} <= linked
    assert parser.targets.index("figures/curves_all.svg") < parser.targets.index(
        "figures/curves_fmnist_balanced_dirichlet_0.01.svg")
    copied = out / "figures" / "dynafed_synthetic_fmnist_balanced_dirichlet_0.01.png"
    source = root / SUITE / "dynafed_fmnist_balanced_dirichlet-0.01_s0_0123456789" / "dynafed_synthetic.png"
    assert copied.read_bytes() == source.read_bytes()
    assert "mu = 0.1" in (out / "index.html").read_text()


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
    assert "tuned" not in sections and "synthetic" not in sections


def test_missing_suite_is_a_one_line_error(tmp_path, capsys):
    assert reports_main(["nosuch", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch" in err


def test_default_output_cannot_overwrite_the_package(tmp_path, capsys):
    (tmp_path / "reference").mkdir()
    assert reports_main(["reference", "--results", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


def test_algorithms_differ_by_more_than_colour():
    looks = [line_style(i) for i in range(12)]
    assert len({(s["linestyle"], s["marker"]) for s in looks}) == 12
    assert len({s["color"] for s in looks[:8]}) == 8

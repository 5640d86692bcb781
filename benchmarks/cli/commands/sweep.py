"""Run every cell of a suite (finished runs are skipped) and print a summary table.

With ``--set``/``--set-file`` that change its cells, the runs file under ``<suite>@<hash of the overrides>``,
never among the suite's own runs; the folder is printed first and last."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name (benchmarks/experiments/suites/<name>.toml) or path to a suite TOML")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process each")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting in every cell (repeatable); runs then file under <suite>@<hash>")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE",
                        help="a TOML file of overrides nested like a config (e.g. a tuning study's best.toml), "
                             "applied to the cells its [scope] matches, before --set; repeatable")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.limits import check_devices
    from benchmarks.experiments.suites import load_suite
    from benchmarks.experiments.sweep import run_sweep, summary_table
    from benchmarks.store.rundir import results_root

    if args.jobs < 1:
        raise ConfigError(f"--jobs: {args.jobs} must be >= 1")
    suite = load_suite(args.suite, args.overrides, args.set_files)
    check_devices(suite.cells)
    if suite.derived_from:
        print(f"suite {suite.derived_from}: --set/--set-file change its cells, so they file under "
              f"{results_root(args.results) / suite.name}, apart from its own runs")
    dirs = run_sweep(suite, jobs=args.jobs, results=args.results, data_dir=args.data_dir,
                     progress=not args.no_progress)
    print(f"suite {suite.name}: {len(dirs)} runs, final test accuracy (%) mean over seeds")
    print(summary_table(dirs))
    print(f"results: {results_root(args.results) / suite.name}")
    return 0

"""Estimate how long a suite (what is left of it) will take on this machine, without running it."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name (benchmarks/experiments/suites/<name>.toml) or path to a suite TOML")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, as `sweep --jobs`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting in every cell, as in `sweep` (repeatable)")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE",
                        help="a scoped TOML file of overrides, as in `sweep` (repeatable)")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/); "
                                          "finished runs there are not counted")
    parser.add_argument("--published", metavar="DIR", help="an earlier report folder of this suite: the runs it "
                                                           "includes are not counted (as `sweep --published`)")


def run(args) -> int:
    from benchmarks.cli.kernels import ensure_kernels
    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.cells import only, published_run_ids, unpublished
    from benchmarks.experiments.estimate import describe, estimate_for
    from benchmarks.experiments.limits import check_devices
    from benchmarks.experiments.suites import load_suite
    from benchmarks.store.rundir import results_root

    if args.jobs < 1:
        raise ConfigError(f"--jobs: {args.jobs} must be >= 1")
    suite = load_suite(args.suite, args.overrides, args.set_files)
    if args.published:
        published = published_run_ids(args.published, suite.name)
        suite = only(suite, unpublished(suite, list(range(len(suite.cells))), published))
    suite, notes = suite.runnable()
    check_devices(suite.cells)  # costs are measured on the cells' device, and with their kernels
    ensure_kernels(suite.cells, getattr(args, "as_program", False))
    for note in notes:
        print(note)
    print(describe(suite.name, estimate_for(suite, results_root(args.results), args.jobs)))
    return 0

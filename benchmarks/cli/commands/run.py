"""Run one config; it ends with one line: accuracies, wall time and the result folder."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", metavar="SUITE", help="start from a suite's [base] settings, e.g. --base quick "
                                                        "(minutes on 2 CPU cores; without it the defaults are the "
                                                        "paper's full scale)")
    parser.add_argument("--config", help="a run config TOML file (defaults apply to what it omits)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set partition.alpha=0.04 (repeatable); a run made with "
                             "overrides files under <suite>@<hash of the overrides>")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE",
                        help="a TOML file of overrides nested like a config (e.g. a tuning study's best.toml), "
                             "applied before --set; repeatable")
    parser.add_argument("--suite", default="default", help="results sub-folder to file the run under (a name: "
                                                           "letters, digits and _ . @ -)")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import time

    from benchmarks.cli.kernels import ensure_kernels
    from benchmarks.cli.outcome import outcome_line
    from benchmarks.core.typed import ConfigError
    from benchmarks.engine.runner import run as run_config
    from benchmarks.experiments.config import load_config
    from benchmarks.experiments.limits import check_devices
    from benchmarks.experiments.suites import suite_base
    from benchmarks.store.rundir import SUITE_NAME_RULE, RunDirectory, is_suite_name, results_root

    if not is_suite_name(args.suite):
        raise ConfigError(f"--suite: {args.suite!r} is not a suite name ({SUITE_NAME_RULE})")
    base = suite_base(args.base) if args.base else None
    cfg = load_config(args.config, args.overrides, args.set_files, base=base)
    suite = _filing_suite(args, cfg)
    out = RunDirectory(results_root(args.results), suite, cfg.run_id())
    if out.is_complete():
        print(outcome_line(out.final))
        return 0
    check_devices([cfg])
    ensure_kernels([cfg], getattr(args, "as_program", False))
    if suite != args.suite:
        print(f"--set/--set-file change the config, so the run files under {suite}, apart from {args.suite}'s own runs")
    from benchmarks.experiments.estimate import estimate_suite, format_duration
    print(f"estimated time on this machine: {format_duration(estimate_suite([cfg], [cfg], 1).wall_seconds)} "
          f"(algorithm {cfg.algorithm}, {cfg.rounds} rounds, {cfg.dataset.name}, {cfg.model.name}-{cfg.model.width})",
          flush=True)
    start = time.perf_counter()
    run_dir = run_config(cfg, suite=suite, results=args.results, data_dir=args.data_dir, progress=not args.no_progress)
    print(outcome_line(run_dir, time.perf_counter() - start))
    return 0


def _filing_suite(args, cfg) -> str:
    """``--suite``, or its ``@<hash>`` variant when --set/--set-file change what the config alone would run."""
    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.config import filing_name, load_config, read_set_file
    from benchmarks.experiments.suites import suite_base

    if not (args.overrides or args.set_files):
        return args.suite
    try:
        own = [load_config(args.config, base=suite_base(args.base) if args.base else None)]
    except ConfigError:  # the file alone is not a valid run, so the overrides surely change it
        own = None
    return filing_name(args.suite, own, [cfg], args.overrides, [read_set_file(p) for p in args.set_files])

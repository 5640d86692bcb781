"""Build the report of one suite (tables, figures, index.html) from its results."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name: the folder under the results root (<suite>@<hash> for runs "
                                      "made with --set)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    source.add_argument("--from-csv", metavar="DIR", help="rebuild from a report's runs.csv and curves.csv in DIR "
                                                         "(a committed report rebuilds without its results)")
    parser.add_argument("--published", metavar="DIR",
                        help="an earlier report folder of this suite (e.g. reports/<suite>): the runs its CSVs "
                             "include that have no result folder are taken from them (see sweep --published)")
    parser.add_argument("--out", help="report folder (default: reports/<suite>/ in the repository)")


def run(args) -> int:
    from benchmarks.core.typed import ConfigError
    from benchmarks.store.rundir import SUITE_NAME_RULE, is_suite_name
    from reports.__main__ import main as report_main

    if not is_suite_name(args.suite):
        raise ConfigError(f"suite: {args.suite!r} is not a suite name ({SUITE_NAME_RULE})")
    if args.published and args.from_csv:
        raise ConfigError("--published: not with --from-csv (which reads one report's CSVs only)")
    if args.published:  # checked before anything is written
        from benchmarks.experiments.cells import published_run_ids
        published_run_ids(args.published, args.suite)
    if not args.from_csv:
        refresh_deviations(args.suite, args.results, args.published)
    argv = [args.suite] + (["--results", args.results] if args.results else []) + (
        ["--from-csv", args.from_csv] if args.from_csv else []) + (
        ["--published", args.published] if args.published else []) + (["--out", args.out] if args.out else [])
    return report_main(argv)


def refresh_deviations(suite: str, results: str | None, published: str | None = None) -> None:
    """Rewrite the results folder's deviations.csv for the suite's cells that have a run folder there (or a
    row in the ``published`` report), with the reasons the suite file gives now (the sweep wrote the file,
    for every cell, when it started)."""
    from benchmarks.experiments.cells import published_run_ids
    from benchmarks.experiments.deviations import collect, deviation_rows
    from benchmarks.experiments.suites import SUITES_DIR, load_suite
    from benchmarks.store.rundir import results_root
    from benchmarks.store.schema import DEVIATIONS_FILE, write_deviations

    folder = results_root(results) / suite
    if not folder.is_dir() or not (SUITES_DIR / f"{suite}.toml").is_file():
        return
    loaded = load_suite(suite)
    carried = published_run_ids(published, suite) if published else frozenset()
    present = [cell for cell in loaded.cells if (folder / cell.run_id()).is_dir() or cell.run_id() in carried]
    write_deviations(folder / DEVIATIONS_FILE, deviation_rows(present, loaded.reasons, collect(loaded.cells)))

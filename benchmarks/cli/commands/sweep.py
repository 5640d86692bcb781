"""Run every cell of a suite (finished runs are skipped) and print a summary table.

With ``--set``/``--set-file`` that change its cells, the runs file under ``<suite>@<hash of the overrides>``,
never among the suite's own runs; the folder is printed first and last. ``--backend ray`` runs the cells as
Ray tasks; ``--list-cells``, ``--cell`` and ``--shard`` serve array jobs (one cell per task). ``--published
DIR`` leaves the cells whose runs an earlier report of the suite (committed CSVs) already holds."""
from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name (benchmarks/experiments/suites/<name>.toml) or path to a suite TOML")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process each (with --backend "
                                                            "ray and no --address: the CPUs of the local cluster)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting in every cell (repeatable); runs then file under <suite>@<hash>")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE",
                        help="a TOML file of overrides nested like a config (e.g. a tuning study's best.toml), "
                             "applied to the cells its [scope] matches, before --set; repeatable")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local processes (default), or one Ray task per cell (needs the cluster extra)")
    parser.add_argument("--address", help="with --backend ray: a running cluster (auto, HOST:PORT or ray://...); "
                                          "default: start a local one with --jobs CPUs")
    parser.add_argument("--gpus-per-run", type=float, metavar="SHARE",
                        help="with --backend ray: the GPU share each CUDA run declares (default 1; 0.25 packs four "
                             "runs onto a GPU)")
    parser.add_argument("--list-cells", action="store_true",
                        help="print each cell's index, run id and state (finished, claimed, pending, or with "
                             "--published: published), run nothing")
    parser.add_argument("--published", metavar="DIR",
                        help="an earlier report folder of this suite (e.g. reports/<suite>): the runs its runs.csv "
                             "lists as finished are not run again (build the report with the same option)")
    select = parser.add_mutually_exclusive_group()
    select.add_argument("--cell", metavar="I", help="run only cell I (an index from --list-cells), e.g. "
                                                    "$SLURM_ARRAY_TASK_ID")
    select.add_argument("--shard", metavar="i/n", help="run only the cells whose index is i modulo n")


def run(args) -> int:
    from benchmarks.cli.kernels import ensure_kernels
    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.cells import cell_lines, only, published_run_ids, selected_indices, unpublished
    from benchmarks.experiments.limits import check_devices
    from benchmarks.experiments.ray_cells import RayOptions
    from benchmarks.experiments.suites import load_suite
    from benchmarks.experiments.sweep import run_sweep, summary_table
    from benchmarks.store.rundir import results_root

    if args.jobs < 1:
        raise ConfigError(f"--jobs: {args.jobs} must be >= 1")
    for option, value in (("--address", args.address), ("--gpus-per-run", args.gpus_per_run)):
        if value is not None and args.backend != "ray":
            raise ConfigError(f"{option}: only with --backend ray")
    ray_options = None
    if args.backend == "ray":
        ray_options = RayOptions(address=args.address,
                                 gpus_per_run=1.0 if args.gpus_per_run is None else args.gpus_per_run)
    suite = load_suite(args.suite, args.overrides, args.set_files)
    indices = selected_indices(suite, args.cell, args.shard)
    published = published_run_ids(args.published, suite.name) if args.published else frozenset()
    if args.list_cells:  # stdout holds only the cell lines, for shell tools (wc -l, awk)
        for line in cell_lines(suite, results_root(args.results), indices, published):
            print(line)
        return 0
    # Before anything is printed: the restart would print it again.
    ensure_kernels([suite.cells[i] for i in indices], getattr(args, "as_program", False))
    if published:
        left = unpublished(suite, indices, published)
        print(f"suite {suite.name}: {len(indices) - len(left)} of {len(indices)} cells are published in "
              f"{args.published}; they are not run again", file=sys.stderr)
        indices = left
    suite = only(suite, indices)
    if ray_options is None:  # on Ray the cluster's nodes hold the GPUs, not necessarily this machine
        check_devices(suite.cells)
    if suite.derived_from:
        print(f"suite {suite.derived_from}: --set/--set-file change its cells, so they file under "
              f"{results_root(args.results) / suite.name}, apart from its own runs")
    dirs = run_sweep(suite, jobs=args.jobs, results=args.results, data_dir=args.data_dir,
                     progress=not args.no_progress, ray_options=ray_options)
    print(f"suite {suite.name}: {len(dirs)} runs, final test accuracy (%) mean over seeds")
    print(summary_table(dirs))
    print(f"results: {results_root(args.results) / suite.name}")
    return 0

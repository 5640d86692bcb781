"""Export a suite's finished runs for TensorBoard (curves and settings), from the results files."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name: the folder under the results root")
    parser.add_argument("--tensorboard", required=True, metavar="DIR",
                        help="write one event-file folder per run under DIR (then: tensorboard --logdir DIR)")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")


def run(args) -> int:
    from pathlib import Path

    from benchmarks.core.typed import ConfigError
    from benchmarks.experiments.export import export_suite
    from benchmarks.store.rundir import SUITE_NAME_RULE, is_suite_name, results_root
    from benchmarks.store.schema import SchemaError

    if not is_suite_name(args.suite):
        raise ConfigError(f"suite: {args.suite!r} is not a suite name ({SUITE_NAME_RULE})")
    out = Path(args.tensorboard)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--tensorboard: {out} is a file, not a folder")
    try:
        exported, skipped = export_suite(results_root(args.results) / args.suite, out)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
    for line in skipped:
        print(f"skipped {line}")
    print(f"exported {len(exported)} runs of {args.suite} to {out}; view with: tensorboard --logdir {out}")
    return 0

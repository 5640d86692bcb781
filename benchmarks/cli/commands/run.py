"""Run one config and print its result directory."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a run config TOML file (defaults apply to what it omits)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set partition.alpha=0.04 (repeatable)")
    parser.add_argument("--set-file", dest="set_files", action="append", default=[], metavar="FILE",
                        help="a TOML file of overrides nested like a config (e.g. a tuning study's best.toml), "
                             "applied before --set; repeatable")
    parser.add_argument("--suite", default="default", help="results sub-folder to file the run under")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--data-dir", help="data directory (default: $HETBENCH_DATA or data/)")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from benchmarks.experiments.config import load_config
    from benchmarks.engine.runner import run as run_config

    cfg = load_config(args.config, args.overrides, args.set_files)
    print(run_config(cfg, suite=args.suite, results=args.results, data_dir=args.data_dir,
                     progress=not args.no_progress))
    return 0
